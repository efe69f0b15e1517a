#!/bin/sh
# Install, with apt-get, whichever of the packages tapegrad needs are missing.
# Usage: scripts/deps.sh build|test|main   (test and main each add to build)
# Quick when nothing is missing: it only asks dpkg.
set -eu

level=${1:-build}
pkgs="gcc pkg-config meson ninja-build check libsubunit-dev libjemalloc-dev libcjson-dev zlib1g-dev"
case "$level" in
build) ;;
test) pkgs="$pkgs clang libomp-dev clang-format valgrind python3 dataset-fashion-mnist" ;;
main) pkgs="$pkgs dataset-fashion-mnist" ;;
*) echo "usage: $0 build|test|main" >&2; exit 2 ;;
esac

missing=""
for p in $pkgs; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$status" in
    *"install ok installed"*) ;;
    *) missing="$missing $p" ;;
    esac
done

[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=sudo
    else
        echo "deps: missing packages:$missing; run this as root to install them" >&2
        exit 1
    fi
else
    SUDO=
fi
echo "deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing
