#!/usr/bin/env bash
# Makes the Dockerfile's base images without a registry: a Debian 12 root
# file system from Debian's own mirror (debootstrap, minbase) imported into
# podman as localhost/debian:12 (and tagged localhost/debian:12-slim; the
# runtime stage installs only libraries, so the same minbase serves both).
#
#   scripts/base-image.sh [MIRROR]     (as root; takes a few minutes)
#   podman build -f deploy/Dockerfile --build-arg BASE_IMAGE=localhost/debian:12 \
#       --build-arg RUNTIME_IMAGE=localhost/debian:12-slim -t pushbridge .
set -euo pipefail
MIRROR="${1:-http://deb.debian.org/debian}"
RUNTIME="${CONTAINER_RUNTIME:-podman}"
if "$RUNTIME" image exists localhost/debian:12 2>/dev/null; then
    echo "localhost/debian:12 exists"
    exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap is not installed" >&2; exit 1; }
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase bookworm "$root" "$MIRROR"
# The same apt sources a debian:12 image has, so apt-get in the stages works.
echo "deb $MIRROR bookworm main" >"$root/etc/apt/sources.list"
echo "deb $MIRROR bookworm-updates main" >>"$root/etc/apt/sources.list"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | "$RUNTIME" import - localhost/debian:12
"$RUNTIME" tag localhost/debian:12 localhost/debian:12-slim
