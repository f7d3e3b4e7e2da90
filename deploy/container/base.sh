#!/usr/bin/env bash
# Make the two base images of the Dockerfile from Debian packages alone, with mmdebstrap (no
# container registry needed), and print their names: the runtime base, then the build base.
#
#     deploy/container/base.sh podman     # or docker; run as root (mmdebstrap unpacks as root)
#
# Each image is named after a hash of the package lists, suite, mirrors and options: an image
# that already exists is kept, so a second run takes no time, and a changed list makes a new one.
set -euo pipefail

tool=${1:?usage: $0 podman|docker}
SUITE=bookworm
MIRRORS=(
    "deb http://deb.debian.org/debian $SUITE main"
    "deb http://deb.debian.org/debian $SUITE-updates main"
    "deb http://deb.debian.org/debian-security $SUITE-security main"
)
# What the service runs on: Python, numpy's C++ runtime, nginx (uWSGI has Python linked in).
RUNTIME=python3,libstdc++6,nginx
# What builds uWSGI and the venv, on top of that.
BUILD=$RUNTIME,python3-venv,python3-dev,gcc,libc6-dev
# --variant=essential: Debian's Essential packages and the ones named, no apt (nothing is
# installed later); manuals, translations and docs (but their copyright files) left out.
OPTIONS=(
    --variant=essential --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*'
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
)

here=$(cd "$(dirname "$0")" && pwd)
key=$(printf '%s\n' "$SUITE" "${MIRRORS[@]}" "$RUNTIME" "$BUILD" "${OPTIONS[@]}" | sha256sum | cut -c1-12)
work=$(cd "$here/../.." && pwd)/.cache/container

make_base() {
    local name=$1 packages=$2 tar
    if "$tool" image inspect "$name" >/dev/null 2>&1; then
        return 0
    fi
    mkdir -p "$work"
    tar=$(mktemp "$work/base-XXXXXX.tar")
    # The tar is only the way into the image store: removed once imported, also on failure.
    trap 'rm -f "$tar" "$tar.log"' RETURN
    echo "making $name from Debian packages (mmdebstrap, about 20 s)" >&2
    if ! mmdebstrap "${OPTIONS[@]}" --include="$packages" "$SUITE" "$tar" "${MIRRORS[@]}" \
        >"$tar.log" 2>&1; then
        cat "$tar.log" >&2
        return 1
    fi
    "$tool" import "$tar" "$name" >/dev/null
}

make_base "localhost/modelserver-base:runtime-$key" "$RUNTIME"
make_base "localhost/modelserver-base:build-$key" "$BUILD"
echo "localhost/modelserver-base:runtime-$key localhost/modelserver-base:build-$key"
