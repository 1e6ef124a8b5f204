#!/bin/sh
# Installs what seqgrad needs to build and test (Debian 12), then configures the
# build directory. Idempotent and quiet when everything is already there.
# Usage: scripts/setup.sh [builddir] [extra meson options...]
set -eu
cd "$(dirname "$0")/.."
BUILD=${1:-build}
[ $# -gt 0 ] && shift

PKGS="gcc libc6-dev meson ninja-build pkg-config libblis-dev libxsmm-dev libhdf5-dev libcriterion-dev libutf8proc-dev"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "setup: installing$missing"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

if [ ! -f "$BUILD/build.ninja" ]; then
    meson setup "$BUILD" "$@" >/dev/null
fi
