"""The side-by-side benchmark: `make bench` runs bench/run.py."""
