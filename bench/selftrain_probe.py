#!/usr/bin/env python
"""One round of self-training at 100-1,000 labels: does it close some of ULMFiT's gap to SetFit?

A question for the issue's few-label goal, measured before anything is built into the library.
Same harness as bench/fewlabel_sweep.py: a fixed stratified dev set of 2,000 Rotten Tomatoes
training texts (seed 1234) is the criterion, each run's labels are drawn from the other 8,246 as
``accuracy.py sizes`` draws them, the LM is the semi-supervised one that ``accuracy.py`` caches.
For each (size, seed):

1. ``base``: the library's classifier recipe on the labels (fewlabel_sweep's ``base``; its dev and
   test figures must reproduce that sweep's rows, training being deterministic);
2. its predictions on the unlabeled pool (the texts that are neither dev nor labeled), and the
   ``--per-class`` most confident texts of each predicted class as pseudo-labels;
3. ``self1``: a new classifier from the same LM, the recipe sized for labels + pseudo-labels,
   trained on both.

Scored on the dev set and, for the record, the test set. Rows go to bench/results/selftrain.jsonl
(a run already there is skipped).

    .venv/bin/python bench/selftrain_probe.py run --sizes 100 200 500 1000 --seeds 0 1 2
    .venv/bin/python bench/selftrain_probe.py report
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

import accuracy as A  # noqa: E402
import fewlabel_sweep as F  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "selftrain.jsonl"


def pseudo_labels(probs, labels: list[str], per_class: int) -> list[tuple[int, str, float]]:
    """(index, predicted label, confidence) of the `per_class` most confident texts of each
    predicted class (all of a class's texts when it has fewer), in index order."""
    import numpy as np

    probs = np.asarray(probs)
    pred, conf = probs.argmax(1), probs.max(1)
    picked = []
    for c in range(probs.shape[1]):
        idx = np.flatnonzero(pred == c)
        top = idx[np.argsort(-conf[idx], kind="stable")[:per_class]]
        picked += [(int(i), labels[c], float(conf[i])) for i in top]
    return sorted(picked)


def run(a) -> None:
    from ulmfit.classifier_api import TextClassifier
    from ulmfit.data.labeled import LabeledTexts

    A._maybe_jemalloc()
    done = F.done_keys(a.results, ("dataset", "n_labels", "seed", "variant", "per_class"))
    folder, train, test = A.load_dataset(a.dataset)
    dev, pool = F.dev_split(train)
    lm, lm_info = A.target_lm(a.dataset, False, folder / "train.csv")
    enc: dict = {}
    for size in a.sizes:
        for seed in a.seeds:
            if (a.dataset, size, seed, "self1", a.per_class) in done:
                continue
            idx = set(A.stratified_indices(pool, size, seed)) if size < len(pool) else set(range(len(pool)))
            sub = pool.subset(sorted(idx))
            rest = pool.subset(i for i in range(len(pool)) if i not in idx)
            rows = []
            t0 = time.time()
            out = A.WORK / a.dataset / f"selftrain-n{size}-s{seed}"
            shutil.rmtree(out, ignore_errors=True)
            cfg = F.variant_config("base", size, seed, False)
            r = A.train_and_eval(lm, sub, test.subset([0]), out, cfg)
            clf = TextClassifier.load(out)
            labels = clf.labels
            pdev, ptest, prest = (F._predict(clf, x, enc) for x in (dev, test, rest))
            rows.append(("base", pdev, ptest, {"best_epoch": r["best_epoch"], "epochs": r["epochs"]}, t0))
            t1 = time.time()
            picked = pseudo_labels(prest, labels, a.per_class)
            truth_ok = sum(rest.labels[i] == lab for i, lab, _ in picked) / max(len(picked), 1)
            both = LabeledTexts(sub.texts + [rest.texts[i] for i, _, _ in picked],
                                sub.labels + [lab for _, lab, _ in picked], "labels + pseudo-labels")
            cfg2 = A.clf_config(len(both), seed)
            shutil.rmtree(out, ignore_errors=True)
            r2 = A.train_and_eval(lm, both, test.subset([0]), out, cfg2)
            clf2 = TextClassifier.load(out)
            pdev2, ptest2 = (F._predict(clf2, x, enc) for x in (dev, test))
            rows.append(("self1", pdev2, ptest2, {"best_epoch": r2["best_epoch"], "epochs": r2["epochs"],
                                                  "n_pseudo": len(picked), "pseudo_accuracy": truth_ok,
                                                  "per_class": a.per_class}, t1))
            shutil.rmtree(out, ignore_errors=True)
            for v, pd, pt, extra, ts in rows:
                row = F.write_row(a.results, {"dataset": a.dataset, "n_labels": size, "seed": seed, "variant": v,
                                              "direction": "fwd"}, labels, pd, pt, dev, test,
                                  (t1 if v == "base" else time.time()) - ts,
                                  {**extra, "lm_perplexity": lm_info.get("valid_perplexity")})
                print(f"== n={size} seed={seed} {v:<6} dev {row['dev_accuracy']:.4f}  test {row['test_accuracy']:.4f}  "
                      f"{row['seconds']:.0f}s" + (f"  pseudo {len(picked)} at {truth_ok:.3f} correct"
                                                   if v == "self1" else ""), flush=True)


def report(path: Path = RESULTS, metric: str = "dev_accuracy") -> str:
    rows = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        r = json.loads(line)
        rows[(r["n_labels"], r["seed"], r["variant"], r.get("per_class"))] = r
    out = [f"{metric} (%), mean over seeds; self1 minus base paired by seed"]
    for size in sorted({k[0] for k in rows}):
        base = {k[1]: r[metric] for k, r in rows.items() if k[0] == size and k[2] == "base"}
        for pc in sorted({k[3] for k in rows if k[0] == size and k[2] == "self1"}):
            st = {k[1]: r for k, r in rows.items() if k[0] == size and k[2] == "self1" and k[3] == pc}
            pairs = [st[s][metric] - base[s] for s in st if s in base]
            pa = statistics.mean(r["pseudo_accuracy"] for r in st.values())
            out.append(f"n={size} per_class={pc}: base {100 * statistics.mean(base.values()):.2f} (n={len(base)}), "
                       f"self1 {100 * statistics.mean(r[metric] for r in st.values()):.2f} (n={len(st)}), "
                       f"paired {100 * statistics.mean(pairs):+.2f} ({', '.join(f'{100 * p:+.1f}' for p in pairs)}); "
                       f"pseudo-labels {100 * pa:.1f}% correct")
    return "\n".join(out)


def main(argv=None) -> None:
    ap = F.harness_args(__doc__.splitlines()[0])
    ap.add_argument("--per-class", type=int, default=500, help="pseudo-labels per predicted class")
    ap.add_argument("--metric", default="dev_accuracy", choices=["dev_accuracy", "test_accuracy"])
    ap.add_argument("--results", type=Path, default=RESULTS)
    a = ap.parse_args(argv)
    if a.what == "run":
        run(a)
    else:
        print(report(a.results, a.metric))


if __name__ == "__main__":
    main()
