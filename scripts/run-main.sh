#!/bin/sh
# Build tapegrad (release) and run its main job. Installs missing packages with
# apt-get first; the build directory build/release is reused, so a second run
# only rebuilds what changed. Arguments are passed to the tapegrad command;
# with none it runs the gradient check of every built-in op.
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
    set -- gradcheck
fi
exec "$dir/tools/tapegrad" "$@"
