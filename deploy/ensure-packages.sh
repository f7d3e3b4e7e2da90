#!/bin/sh
# Make sure the Debian packages named as arguments are installed: install the missing ones with
# apt-get when we can (root, or sudo without a password), else say in one line what to run.
set -eu
command -v dpkg-query >/dev/null || { echo "not Debian: make sure these are installed: $*" >&2; exit 0; }
missing=""
for package in "$@"; do
    dpkg-query -W -f='${Status}\n' "$package" 2>/dev/null | grep -q '^install ok installed$' \
        || missing="$missing $package"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
    as_root=""
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    as_root="sudo"
else
    echo "modelserver needs these Debian packages; run: sudo apt-get install -y$missing" >&2
    exit 1
fi
echo "installing:$missing"
# $as_root is empty or "sudo", and $missing a list of names: both are split on purpose.
# shellcheck disable=SC2086
$as_root apt-get update -qq
# shellcheck disable=SC2086
$as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
