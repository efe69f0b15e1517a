#!/bin/sh
# Build tapegrad and run the whole test suite, the way CI does:
#   1. formatting of every C source (clang-format 14, .clang-format)
#   2. gcc build with -Werror, full Check suite (plus the PyTorch interop check
#      when Debian's python3-torch is installed; it skips otherwise)
#   3. clang build with -Werror, full Check suite
#   4. AddressSanitizer + UndefinedBehaviorSanitizer build (jemalloc off), suite
#   5. valgrind memcheck of the suite (jemalloc off)
# Installs missing packages with apt-get first. Build directories live under
# build/ and are reused, so a second run only rebuilds what changed.
# Ends with one line "tests: N passed, N failed" and exits non-zero on any failure.
set -u

cd "$(dirname "$0")/.." || exit 1
scripts/deps.sh test || exit 1

jobs=$(nproc 2>/dev/null || echo 2)
failed_stages=""
total_pass=0
total_fail=0

# meson setup once per directory; reconfigure picks up new test files.
setup() {
    dir=$1
    shift
    if [ -d "$dir/meson-private" ]; then
        meson setup --reconfigure "$dir" "$@" >"$dir.setup.log" 2>&1
    else
        mkdir -p "$(dirname "$dir")"
        meson setup "$dir" "$@" >"$dir.setup.log" 2>&1
    fi || { cat "$dir.setup.log"; return 1; }
}

# Add a stage's results from meson's test log to the totals.
count() {
    log=$1/meson-logs/testlog${2:-}.json
    [ -f "$log" ] || return 0
    p=$(grep -c '"result": "OK"' "$log")
    s=$(grep -c '"result": "SKIP"' "$log")
    f=$(grep -c -E '"result": "(FAIL|TIMEOUT|ERROR|UNEXPECTEDPASS)"' "$log")
    total_pass=$((total_pass + p + s))
    total_fail=$((total_fail + f))
}

stage() {
    name=$1
    shift
    echo "==> $name"
    if ! "$@"; then
        echo "==> $name: FAILED"
        failed_stages="$failed_stages $name"
    fi
}

format_check() {
    files=$(git ls-files '*.c' '*.h' 2>/dev/null || find . -name '*.[ch]' -not -path './build/*')
    # shellcheck disable=SC2086
    clang-format --dry-run --Werror $files
}

# build_and_test DIR [meson options]; $test_args is passed to meson test.
test_args=""
build_and_test() {
    dir=$1
    shift
    setup "$dir" "$@" || return 1
    ninja -C "$dir" -j "$jobs" || return 1
    rm -f "$dir/meson-logs/testlog.json"
    # shellcheck disable=SC2086
    meson test -C "$dir" --print-errorlogs --num-processes "$jobs" $test_args
    rc=$?
    count "$dir"
    return $rc
}

clang_build_and_test() {
    old_cc=${CC-}
    CC=clang
    export CC
    test_args="--no-suite torch"
    build_and_test build/ci-clang -Dwerror=true
    rc=$?
    test_args=
    if [ -n "$old_cc" ]; then CC=$old_cc; else unset CC; fi
    return $rc
}

valgrind_test() {
    dir=build/ci-asan-free
    setup "$dir" -Djemalloc=disabled -Dbench=false -Dbuildtype=debugoptimized || return 1
    ninja -C "$dir" -j "$jobs" || return 1
    rm -f "$dir/meson-logs/testlog-valgrind.json"
    meson test -C "$dir" --setup=valgrind --print-errorlogs --num-processes "$jobs" \
        --no-suite headers
    rc=$?
    count "$dir" -valgrind
    return $rc
}

stage format format_check
stage gcc build_and_test build/ci-gcc -Dwerror=true
stage clang clang_build_and_test
sanitize_build_and_test() {
    test_args="--no-suite torch"
    build_and_test "$@"
    rc=$?
    test_args=""
    return $rc
}

stage sanitizers sanitize_build_and_test build/ci-sanitize -Dwerror=true -Djemalloc=disabled \
    -Db_sanitize=address,undefined -Db_lundef=false -Dbench=false
stage valgrind valgrind_test

if [ -n "$failed_stages" ]; then
    echo "failed stages:$failed_stages"
fi
echo "tests: $total_pass passed, $total_fail failed"
[ -z "$failed_stages" ] && [ "$total_fail" -eq 0 ]
