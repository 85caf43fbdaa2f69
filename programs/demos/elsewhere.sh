#!/bin/sh
# elsewhere.sh - checkpoint a running machine here, resume it somewhere else.
#
#   1. run programs/demos/elsewhere.asm on a fresh disk; the host takes a
#      checkpoint at tick 900, while a disk write is in flight and the
#      guest is in the middle of printing a line
#   2. minivm export: copy the checkpoint and its disk files into a folder
#   3. move that folder away and delete everything else of the first run
#      (as if the folder had been copied to another computer)
#   4. resume from the moved folder, in another working directory
#   5. compare: the resumed run must print exactly what the original run
#      printed after the checkpoint
#
# Run from the repository root:   sh programs/demos/elsewhere.sh
# (PYTHON=... picks the Python interpreter; the default is python3.)
# It works in a temporary folder and removes it at the end.

set -e
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PY=${PYTHON:-python3}
TICK=900

minivm() {
    PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m minivm "$@"
}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/minivm-elsewhere.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM
mkdir "$WORK/here" "$WORK/there"

echo "== 1. here: run the guest, with a checkpoint at tick $TICK"
cd "$WORK/here"
minivm disk create disk.img 64K
minivm run "$ROOT/programs/demos/elsewhere.asm" --disk disk.img \
    --checkpoint-dir ck --checkpoint-at "$TICK" > "$WORK/original.txt"
cat "$WORK/original.txt"

echo "== 2. here: export the checkpoint and its disk files into the folder 'carry'"
minivm export ck/ckpt-0001.mvc carry

echo "== 3. take 'carry' to the other machine; nothing else of the first run survives"
mv carry "$WORK/there/carry"
cd "$WORK"
rm -rf "$WORK/here"
ls "$WORK/there/carry"

echo "== 4. there: resume from the folder"
cd "$WORK/there"
minivm resume carry/ckpt-0001.mvc > "$WORK/resumed.txt"
cat "$WORK/resumed.txt"

echo "== 5. compare"
size=$(wc -c < "$WORK/resumed.txt")
total=$(wc -c < "$WORK/original.txt")
if [ "$size" -gt 0 ] && tail -c "$size" "$WORK/original.txt" | cmp -s - "$WORK/resumed.txt"; then
    printf 'the original run, with a | where the checkpoint was taken:\n'
    dd if="$WORK/original.txt" bs=1 count=$((total - size)) 2>/dev/null
    printf '|'
    cat "$WORK/resumed.txt"
    echo "identical: the resumed run printed exactly what the original run printed after the checkpoint ($size of $total bytes)"
else
    echo "DIFFERENT: the resumed run's output is not the end of the original run's output" >&2
    exit 1
fi
