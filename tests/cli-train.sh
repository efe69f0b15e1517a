#!/bin/sh
# End-to-end checks of `tapegrad train` and `tapegrad eval` on a small slice of
# Fashion-MNIST: bad command lines exit 2 with a one-line error and a hint; a
# run resumed from its checkpoint (after a finished epoch, and after Ctrl-C in
# the middle of one) ends with the same weights as an uninterrupted run; eval
# of the saved checkpoint reports the accuracy train reported.
# Usage: cli-train.sh TAPEGRAD COMPARE_SCRIPT   (exit 77 when the data set is absent)
set -u
tg=$1
compare=$2
data=/usr/share/datasets/fashion-mnist
[ -d "$data" ] || { echo "cli-train: skipped, no data set in $data"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
check() { # description, then the command's status must equal $expect
    if [ "$status" -ne "$expect" ]; then
        echo "FAIL: $1 (status $status, expected $expect)"
        fail=1
    else
        echo "ok: $1"
    fi
}

# Bad command lines: status 2, one line of error then a hint, nothing on stdout.
for args in "--epochs" "--epochs 0" "--bogus 1" "--model resnet" "--optimizer rmsprop" \
    "--data /nonexistent" "--batch -3" "--lr abc" "--schedule linear"; do
    # shellcheck disable=SC2086
    "$tg" train $args >"$tmp/out" 2>"$tmp/err"
    status=$? expect=2 check "train $args refused"
    if [ -s "$tmp/out" ] || [ "$(wc -l <"$tmp/err")" -ne 2 ]; then
        echo "FAIL: train $args: expected one error line and one hint on stderr"
        fail=1
    fi
done
"$tg" eval >/dev/null 2>&1
status=$? expect=2 check "eval without --checkpoint refused"

common="--model mlp --limit 1280 --batch 64 --seed 3 --threads 1 --schedule cosine --quiet"

# Uninterrupted: 2 epochs.
# shellcheck disable=SC2086
"$tg" train $common --epochs 2 --save "$tmp/full.st" >"$tmp/full.log"
status=$? expect=0 check "train 2 epochs"

# Resumed after the first epoch.
# shellcheck disable=SC2086
"$tg" train $common --epochs 1 --save "$tmp/half.st" >/dev/null
status=$? expect=0 check "train 1 epoch"
# shellcheck disable=SC2086
"$tg" train $common --epochs 2 --resume "$tmp/half.st" --save "$tmp/half.st" >/dev/null
status=$? expect=0 check "resume to 2 epochs"
"$compare" "$tmp/full.st" "$tmp/half.st"
status=$? expect=0 check "resumed run equals the uninterrupted one"

# Interrupted by Ctrl-C, then resumed. Where the signal lands depends on the
# machine's speed, so the run is resumed to the end of the epoch it stopped in
# and compared with an uninterrupted run of as many epochs.
# shellcheck disable=SC2086
"$tg" train $common --limit 60000 --epochs 2 --save "$tmp/int.st" >/dev/null 2>"$tmp/int.err" &
pid=$!
sleep 3
kill -INT "$pid"
wait "$pid"
status=$? expect=130 check "Ctrl-C exits 130"
where=$(sed -n 's/.*interrupted; saved .* (epoch \([0-9]*\), batch \([0-9]*\)).*/\1 \2/p' "$tmp/int.err")
if [ -n "$where" ] && [ -f "$tmp/int.st" ]; then
    echo "ok: Ctrl-C saved a checkpoint (epoch, batch: $where)"
    # shellcheck disable=SC2086
    set -- $where
    upto=$1
    [ "$2" -gt 0 ] || [ "$1" -eq 0 ] && upto=$(($1 + 1))
    # shellcheck disable=SC2086
    "$tg" train $common --limit 60000 --epochs "$upto" --resume "$tmp/int.st" \
        --save "$tmp/int.st" >/dev/null
    status=$? expect=0 check "resume after Ctrl-C"
    # shellcheck disable=SC2086
    "$tg" train $common --limit 60000 --epochs "$upto" --save "$tmp/int-full.st" >/dev/null
    status=$? expect=0 check "uninterrupted run of $upto epochs"
    "$compare" "$tmp/int-full.st" "$tmp/int.st"
    status=$? expect=0 check "run resumed after Ctrl-C equals the uninterrupted one"
else
    echo "FAIL: Ctrl-C did not save a checkpoint"
    cat "$tmp/int.err"
    fail=1
fi

# eval of the saved checkpoint reproduces train's final accuracy and loss.
want=$(sed -n 's/^final: test accuracy \([0-9.]*\), test loss \([0-9.]*\).*/\1 \2/p' "$tmp/full.log")
"$tg" eval --checkpoint "$tmp/full.st" >"$tmp/eval.log"
status=$? expect=0 check "eval runs (model read from the checkpoint)"
got=$(sed -n 's/^test accuracy \([0-9.]*\), test loss \([0-9.]*\).*/\1 \2/p' "$tmp/eval.log")
if [ -n "$want" ] && [ "$want" = "$got" ]; then
    echo "ok: eval gives train's accuracy and loss ($got)"
else
    echo "FAIL: train ended with '$want', eval gives '$got'"
    fail=1
fi

[ "$fail" -eq 0 ] && echo "cli-train: all checks passed"
exit "$fail"
