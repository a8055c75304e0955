#!/usr/bin/env bash
# Pretrain the forward and backward general-English LMs side by side on one CUDA GPU within a
# wall-time budget: a 30-second probe of both runs measures their throughput, then each run gets
# a token budget (--max-tokens) it can finish in MINUTES, so the slanted triangular schedule
# completes instead of being cut off. The runs detach (setsid) and checkpoint every few minutes.
# With GPU_PRETRAIN_WAIT=1 they run in the foreground instead: the script waits for both, then
# exports each in float16 to OUT_DIR/export-fwd and OUT_DIR/export-bwd (for a machine that is given
# back, and its detached processes ended, as soon as the command returns).
#   usage: scripts/gpu_pretrain.sh TOKENS_DIR OUT_DIR [MINUTES] [extra ulmfit pretrain args...]
set -euo pipefail
TOK=$1; OUT=$2; MINUTES=${3:-14}; shift 3 || shift $#
ARGS=(--preset small --bs 256 --lr 5e-3 --eval-every 400 --save-every 3 --quiet --device cuda "$@")
ULMFIT=(python3 -m ulmfit)
mkdir -p "$OUT"
"${ULMFIT[@]}" pretrain "$TOK" --out /tmp/probe-fwd --overwrite --max-minutes 0.5 "${ARGS[@]}" > /dev/null &
"${ULMFIT[@]}" pretrain "$TOK" --out /tmp/probe-bwd --overwrite --max-minutes 0.5 --backwards "${ARGS[@]}" > /dev/null &
wait
MAXTOK=$(python3 - "$MINUTES" <<'PY'
import json, sys
rates = []
for d in ("/tmp/probe-fwd", "/tmp/probe-bwd"):
    rows = [json.loads(l) for l in open(f"{d}/metrics.jsonl")]
    rates.append(sorted(r["tokens_per_s"] for r in rows if "tokens_per_s" in r)[-1])
rate = min(rates)
print(int(rate * 60 * float(sys.argv[1]) * 0.92))
print(f"probe: {[round(r) for r in rates]} tokens/s per run", file=sys.stderr)
PY
)
echo "token budget per run: $MAXTOK" | tee "$OUT/budget.txt"
WAIT=${GPU_PRETRAIN_WAIT:-0}
DETACH=(setsid nohup); [ "$WAIT" = 1 ] && DETACH=()
pids=()
for dir in fwd bwd; do
    extra=(); [ "$dir" = bwd ] && extra=(--backwards)
    "${DETACH[@]}" "${ULMFIT[@]}" pretrain "$TOK" --out "$OUT/$dir" --epochs 1000 --max-tokens "$MAXTOK" \
        "${ARGS[@]}" "${extra[@]}" > "$OUT/$dir.log" 2>&1 < /dev/null &
    pids+=($!)
done
echo "started; logs in $OUT/fwd.log $OUT/bwd.log"
if [ "$WAIT" = 1 ]; then
    status=0
    for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
    [ "$status" = 0 ] || { echo "a pretraining run failed (exit $status): see the logs" >&2; exit "$status"; }
    for dir in fwd bwd; do
        "${ULMFIT[@]}" export "$OUT/$dir" --out "$OUT/export-$dir" --dtype float16
    done
    echo "done: $OUT/export-fwd $OUT/export-bwd"
fi
