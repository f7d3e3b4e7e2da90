#!/bin/sh
# uWSGI, at the version requirements.txt pins, built into a venv with Python linked in from its
# static library, as Debian links its own python3 executable:
#
#     deploy/install-uwsgi.sh VENV REQUIREMENTS
#
# uWSGI's own build links the shared libpython3.11.so, and the same app runs about a quarter
# slower on it than on the python3 executable (docs/performance.md): Debian builds the shared
# library as position-independent code, the executable not. So uWSGI is linked the executable's
# way: the whole static library, and not as a position-independent executable (the library's
# code cannot go in one), exporting Python's symbols to the extension modules (-rdynamic, in
# uWSGI's own flags). Prints what it built; prints nothing when the venv's uWSGI is already
# this one. Without the static library (a Python built without it), uWSGI's own build, with
# a warning. Always from the source: a wheel in an index or a directory of wheels was built
# some other way.
set -eu
venv=$1
requirements=$2
pin=$(grep -E '^uWSGI==' "$requirements")
version=${pin#uWSGI==}
built_static() {
    [ "$("$venv/bin/uwsgi" --version 2>/dev/null)" = "$version" ] \
        && ! ldd "$venv/bin/uwsgi" | grep -q libpython
}
built_static && exit 0
# The static library, and the libraries it needs (zlib, expat, libm for its built-in modules).
static=$("$venv/bin/python" -c 'import os, sysconfig as s
path = os.path.join(s.get_config_var("LIBPL"), s.get_config_var("LIBRARY"))
print(path if path.endswith(".a") and os.path.exists(path) else "")')
if [ -z "$static" ]; then
    echo "warning: $venv's Python has no static library: uWSGI links the shared one, which costs" \
        "about a quarter more CPU a request (docs/performance.md)" >&2
    "$venv/bin/pip" install --quiet --no-cache-dir "$pin"
    exit 0
fi
libs=$("$venv/bin/python" -c 'import sysconfig as s
flags = (s.get_config_var("MODLIBS") + " " + s.get_config_var("LIBS")).split()
print(" ".join(dict.fromkeys(flags)))')
UWSGI_PYTHON_NOLIB=1 LDFLAGS="-no-pie -Wl,--whole-archive $static -Wl,--no-whole-archive $libs" \
    "$venv/bin/pip" install --quiet --no-cache-dir --force-reinstall --no-deps --no-binary uWSGI "$pin"
built_static || { echo "uWSGI $version did not build with $static linked in" >&2; exit 1; }
echo "built uWSGI $version with $static linked in"
