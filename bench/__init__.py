"""The side-by-side benchmark of issue 5: `make bench` runs bench/run.py."""
