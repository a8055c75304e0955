#!/usr/bin/env python
"""How many labels the demo's few-label comparison should use: ULMFiT against TF-IDF from the
demo's own fine-tuned LM, at a few sizes and seeds.

`ulmfit demo` fine-tunes the shipped LM for as many epochs as its 10-minute budget allows (one on
most 2-core machines), so its LM is weaker than the accuracy benchmark's (perplexity ~82 against
71.5 on Rotten Tomatoes). This measures what its few-label step would report: for each (size,
seed, validation split), the library's classifier recipe on `sample_labeled(train, size, seed)` (the sample
`ulmfit demo` and `train_classifier(max_train=...)` draw) from the demo's LM, and TF-IDF + logistic
regression (the demo's `tfidf_baseline`) on the same texts, both scored on the test set. Rows go
to bench/results/demo_fewlabel.jsonl.

    .venv/bin/ulmfit demo --out /tmp/demo --quiet            # the LM: /tmp/demo/lm
    .venv/bin/python bench/demo_fewlabel.py --lm /tmp/demo/lm --sizes 100 200 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

RESULTS = ROOT / "bench" / "results" / "demo_fewlabel.jsonl"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lm", required=True, help="the demo's fine-tuned LM (its --out folder's lm/)")
    p.add_argument("--dataset", default="rotten-tomatoes")
    p.add_argument("--sizes", type=int, nargs="+", default=[100, 200])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--valid-frac", type=float, nargs="+", default=[0.0, 0.1],
                   help="the classifier's validation split (the demo's few-label step: 0)")
    p.add_argument("--results", type=Path, default=RESULTS)
    a = p.parse_args(argv)

    from ulmfit import datasets
    from ulmfit.classifier_api import TextClassifier, sample_labeled, train_classifier
    from ulmfit.data.labeled import read_labeled
    from ulmfit.demo import tfidf_baseline
    from ulmfit.train.classify import ClassifierTrainConfig

    folder = datasets.get(a.dataset, progress=False)
    train, test = read_labeled(folder / "train.csv"), read_labeled(folder / "test.csv")
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for vf, n, seed in itertools.product(a.valid_frac, a.sizes, a.seeds):
            t = time.time()
            out = Path(tmp) / f"c{n}-{seed}-{vf}"
            train_classifier(a.lm, folder / "train.csv", out, cfg=ClassifierTrainConfig(seed=seed), max_train=n,
                             valid_frac=vf, progress=False)
            train_s = time.time() - t
            acc = TextClassifier.load(out).evaluate(test, progress=False)["accuracy"]
            base = tfidf_baseline(sample_labeled(train, n, seed), test)["accuracy"]
            row = {"dataset": a.dataset, "lm": str(a.lm), "n": n, "seed": seed, "valid_frac": vf,
                   "ulmfit": round(acc, 4), "tfidf": round(base, 4), "train_s": round(train_s, 1), "commit": commit,
                   "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            rows.append(row)
            a.results.parent.mkdir(parents=True, exist_ok=True)
            with a.results.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)
    for vf, n in itertools.product(a.valid_frac, a.sizes):
        mine = [r for r in rows if r["n"] == n and r["valid_frac"] == vf]
        u = [100 * r["ulmfit"] for r in mine]
        b = [100 * r["tfidf"] for r in mine]
        print(f"{n} labels, valid_frac {vf:g}: ULMFiT {statistics.mean(u):.2f}, TF-IDF {statistics.mean(b):.2f}, "
              f"ULMFiT minus TF-IDF by seed: {', '.join(f'{x - y:+.1f}' for x, y in zip(u, b))}")


if __name__ == "__main__":
    main()
