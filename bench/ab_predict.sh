#!/bin/bash
# Did a change slow `ulmfit predict` down? Times it at two checkouts, alternating A, B, A, B ... so
# that the machine's drift hits both alike, and checks that both write the same predictions.
#   git worktree add /tmp/wt-old <commit>
#   bench/ab_predict.sh /tmp/wt-old . TEXTS.txt CLASSIFIER_DIR [REPEATS]
# Run it alone: other work on the machine changes the times.
set -euo pipefail
a=$(cd "$1" && pwd)/src; b=$(cd "$2" && pwd)/src; texts=$3; model=$4; repeats=${5:-3}
py=${PYTHON:-$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/python}
out=$(mktemp -d)
for i in $(seq 1 "$repeats"); do
  for v in A B; do
    src=$a; [ $v = B ] && src=$b
    s=$(date +%s.%N)
    PYTHONPATH=$src "$py" -m ulmfit predict "$texts" --model "$model" --quiet > "$out/$v.csv"
    echo "$v $i $(echo "$(date +%s.%N) - $s" | bc) s"
  done
done
cmp -s "$out/A.csv" "$out/B.csv" && echo "same predictions" || echo "PREDICTIONS DIFFER"
rm -r "$out"
