#!/usr/bin/env bash
# Pretrain the forward and backward general-English LMs side by side on one CUDA GPU within a
# wall-time budget: a 30-second probe of both runs measures their throughput, then each run gets
# a token budget (--max-tokens) it can finish in MINUTES, so the slanted triangular schedule
# completes instead of being cut off. The runs detach (setsid) and checkpoint every few minutes.
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
for dir in fwd bwd; do
    extra=(); [ "$dir" = bwd ] && extra=(--backwards)
    setsid nohup "${ULMFIT[@]}" pretrain "$TOK" --out "$OUT/$dir" --epochs 1000 --max-tokens "$MAXTOK" \
        "${ARGS[@]}" "${extra[@]}" > "$OUT/$dir.log" 2>&1 < /dev/null &
done
echo "started; logs in $OUT/fwd.log $OUT/bwd.log"
