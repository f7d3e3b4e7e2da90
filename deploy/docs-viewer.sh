#!/usr/bin/env bash
# Put Swagger UI's files (the viewer of /docs) into DEST, from a pinned package on PyPI:
#
#     deploy/docs-viewer.sh PIP DEST      # e.g. .venv/bin/pip static/swagger-ui
#
# drf-spectacular-sidecar ships swagger-ui-dist, updated with it; only its static files are used
# (never imported, so --no-deps: Django stays out). pip honours PIP_NO_INDEX / PIP_FIND_LINKS.
set -euo pipefail
PACKAGE=drf-spectacular-sidecar==2026.10.1  # Swagger UI 5.33.1
FILES="swagger-ui-bundle.js swagger-ui.css LICENSE"

pip=$1 dest=$2
if [ -f "$dest/.package" ] && [ "$(cat "$dest/.package")" = "$PACKAGE" ]; then
    exit 0
fi
download=$(mktemp -d)
trap 'rm -rf "$download"' EXIT
"$pip" download --quiet --no-deps --dest "$download" "$PACKAGE"
mkdir -p "$dest"
# A wheel is a zip file; python3 reads it where unzip is not installed.
python3 - "$download"/*.whl "$dest" $FILES <<'PYTHON'
import sys, zipfile
wheel, dest, *files = sys.argv[1:]
folder = "drf_spectacular_sidecar/static/drf_spectacular_sidecar/swagger-ui-dist/"
with zipfile.ZipFile(wheel) as archive:
    for name in files:
        with open(f"{dest}/{name}", "wb") as out:
            out.write(archive.read(folder + name))
PYTHON
echo "$PACKAGE" > "$dest/.package"
