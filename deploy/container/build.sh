#!/usr/bin/env bash
# Build the modelserver image (the Dockerfile) with podman or docker, whichever is installed, and
# tag it modelserver:latest and modelserver:<short commit>, <short commit>-dirty when the checkout
# differs from it, untracked files included (the image then holds code no commit has).
# `make image` runs this.
#
#     deploy/container/build.sh [BUILD OPTIONS...]    # options go to `podman build` as they are
#
# BASE: the base image (default debian:bookworm-slim, from a registry), or "local": base images
# made here from Debian packages by base.sh (mmdebstrap, as root; no registry needed).
# CONTAINER_TOOL: podman or docker; CONTEXT: the checkout to build (default this one); TAGS: the
# tags instead of the two above, space-separated.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
context=${CONTEXT:-$(cd "$here/../.." && pwd)}
tool=${CONTAINER_TOOL:-$(command -v podman || command -v docker || true)}
[ -n "$tool" ] || { echo "neither podman nor docker is installed: apt-get install podman" >&2; exit 1; }

args=()
if [ "${BASE:-}" = local ]; then
    bases=$("$here/base.sh" "$tool")
    read -r runtime build <<<"$bases"
    args+=(--build-arg "BASE=$runtime" --build-arg "BUILD_BASE=$build")
elif [ -n "${BASE:-}" ]; then
    args+=(--build-arg "BASE=$BASE")
fi
commit=$(git -C "$context" rev-parse --short HEAD 2>/dev/null || true)
# Untracked files count: a trained model not yet committed goes into the image all the same.
if [ -n "$commit" ] && [ -n "$(git -C "$context" status --porcelain)" ]; then
    commit+=-dirty
fi
for tag in ${TAGS:-modelserver:latest ${commit:+modelserver:$commit}}; do
    args+=(--tag "$tag")
done
# podman's default image format (OCI) has no HEALTHCHECK: the docker format keeps it.
case $(basename "$tool") in podman) args+=(--format docker) ;; esac
exec "$tool" build "${args[@]}" "$@" "$context"
