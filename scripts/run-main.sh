#!/bin/sh
# Build tapegrad (release) and run its main job. Installs missing packages with
# apt-get first; the build directory build/release is reused, so a second run
# only rebuilds what changed. Arguments are passed to the tapegrad command;
# with none it trains the default CNN on Fashion-MNIST (`tapegrad train`).
set -eu

cd "$(dirname "$0")/.."
scripts/deps.sh main

dir=build/release
if [ -d "$dir/meson-private" ]; then
    meson setup --reconfigure "$dir" >/dev/null
else
    meson setup "$dir" -Dbuildtype=release -Dtests=false >/dev/null
fi
ninja -C "$dir" >/dev/null

if [ $# -eq 0 ]; then
    set -- train
fi
exec "$dir/tools/tapegrad" "$@"
