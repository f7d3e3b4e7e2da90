"""The uWSGI that serves: built with Python linked in (deploy/install-uwsgi.sh)."""

import subprocess
import sys
from pathlib import Path

UWSGI = Path(sys.executable).parent / "uwsgi"  # the venv's, which make run and the tests start
ELF_EXECUTABLE = 2  # e_type of a fixed-address executable; a position-independent one is 3


def test_uwsgi_links_no_shared_libpython():
    """Python comes from its static library: on the shared one, the same app costs about a
    quarter more CPU a request (docs/performance.md)."""
    linked = subprocess.run(["ldd", str(UWSGI)], capture_output=True, text=True)
    assert linked.returncode == 0, linked.stderr
    assert "libpython" not in linked.stdout, linked.stdout


def test_uwsgi_is_not_position_independent():
    """The static library's code is not position-independent, so neither is the executable it
    is linked into, as with Debian's own python3."""
    with UWSGI.open("rb") as binary:  # the ELF header's first 18 bytes, not the 9 MB file
        header = binary.read(18)
    assert header[:4] == b"\x7fELF"
    assert int.from_bytes(header[16:18], "little") == ELF_EXECUTABLE
