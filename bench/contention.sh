#!/bin/bash
# Training beside other work: one slice of LM fine-tuning (the frozen epoch of the shipped model on
# 3,000 Rotten Tomatoes snippets, 60k tokens) alone, beside a pure-Python busy loop (one core), and
# beside a 2-thread PyTorch matmul loop, each with PyTorch's default threads (one per core) and with
# OMP_NUM_THREADS=1. Prints the wall time of each run. Needs `ulmfit data get rotten-tomatoes` first.
# Usage: bash bench/contention.sh [REPEATS]   (from the repository root, with .venv set up)
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
U=$ROOT/.venv/bin/ulmfit
PY=$ROOT/.venv/bin/python
W=$(mktemp -d)
trap 'rm -rf "$W"; kill $(jobs -p) 2>/dev/null' EXIT
head -3001 "${ULMFIT_CACHE:-$HOME/.cache/ulmfit}/datasets/rotten-tomatoes/train.csv" > "$W/rt3k.csv"
one() {  # $1: label; the rest: environment settings
  local label=$1; shift
  rm -rf "$W/o"
  local t0 t1
  t0=$(date +%s.%N)
  env "$@" "$U" finetune-lm "$W/rt3k.csv" --format csv --column text --out "$W/o" --epochs 0 --freeze-epochs 1 \
      --max-tokens 60000 --quiet --workers 1 > "$W/$label.out" 2>&1 || { echo "$label failed"; cat "$W/$label.out"; }
  t1=$(date +%s.%N)
  echo "$label $(python3 -c "print(round($t1 - $t0, 1))") s"
}
for _ in $(seq "${1:-1}"); do
  one alone-default-threads
  one alone-1-thread OMP_NUM_THREADS=1
  python3 -c "while True: pass" & B=$!
  one busy-loop-default-threads
  one busy-loop-1-thread OMP_NUM_THREADS=1
  kill $B
  "$PY" -c "
import torch
torch.set_num_threads(2)
a = torch.randn(256, 256)
while True:
    b = a @ a
" & B=$!
  sleep 2
  one torch-2-threads-default-threads
  one torch-2-threads-1-thread OMP_NUM_THREADS=1
  kill $B
done
