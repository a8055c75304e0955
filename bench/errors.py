#!/usr/bin/env python
"""Where does ULMFiT lose to the bag-of-words baseline? A comparison of test errors.

For each seed of the accuracy benchmark's main runs, the forward + backward ensemble's wrong test
predictions are set beside TF-IDF + logistic regression's (the same split): the errors both make,
the ones only ULMFiT makes (and how many of those it makes with every seed: systematic, not seed
noise), the ones only the baseline makes, and the confusions behind ULMFiT's own errors. It also
measures how much of each test text appears in one training text (word 8-grams), since a
near-copy of a training article is easy for a bag of n-grams and says nothing about transfer.

Usage (needs the classifiers of `bench/accuracy.py main` in its work folder, `clf-main-*`)::

    .venv/bin/python bench/errors.py --dataset bbc-news --seeds 0 1 2

Prints a Markdown summary; `--json PATH` also writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import accuracy as A  # noqa: E402  (the benchmark's data, work folder and models)

NGRAM = 8
NEAR_COPY = 0.5  # a test text with more than this share of its 8-grams in one training text


def compare(y, ens: dict, base) -> dict:
    """`ens`: seed -> the ensemble's predicted labels; `base`: the baseline's. All arrays of labels
    aligned with `y`. Returns per-seed counts and the errors ULMFiT makes with every seed."""
    import numpy as np

    y, base = np.asarray(y), np.asarray(base)
    base_wrong = base != y
    per_seed, only = {}, {}
    for seed, pred in sorted(ens.items()):
        pred = np.asarray(pred)
        wrong = pred != y
        only[seed] = set(np.flatnonzero(wrong & ~base_wrong).tolist())
        per_seed[seed] = {"errors": int(wrong.sum()), "shared": int((wrong & base_wrong).sum()),
                          "ulmfit_only": len(only[seed]), "baseline_only": int((~wrong & base_wrong).sum()),
                          "accuracy": float((~wrong).mean())}
    every = sorted(set.intersection(*only.values())) if only else []
    confusions = Counter()
    for seed, idx in only.items():
        pred = np.asarray(ens[seed])
        confusions.update(f"{y[i]} -> {pred[i]}" for i in idx)
    return {"baseline_errors": int(base_wrong.sum()), "per_seed": per_seed, "ulmfit_only_every_seed": every,
            "ulmfit_only_confusions": dict(confusions.most_common())}


def _grams(text: str, n: int = NGRAM) -> set:
    w = re.findall(r"\w+", text.lower())
    return {tuple(w[i:i + n]) for i in range(len(w) - n + 1)}


def overlap(train_texts, test_texts, n: int = NGRAM) -> list[float]:
    """For each test text, the largest share of its word n-grams found in a single training text
    (0 for a text shorter than n words)."""
    index: dict = {}
    for i, t in enumerate(train_texts):
        for g in _grams(t, n):
            index.setdefault(g, []).append(i)
    out = []
    for t in test_texts:
        g = _grams(t, n)
        hits = Counter(i for x in g for i in index.get(x, ()))
        out.append(max(hits.values()) / len(g) if hits else 0.0)
    return out


def main(argv=None) -> int:
    import numpy as np

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="bbc-news", choices=A.DATASETS)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    A._maybe_jemalloc()
    import baselines
    from ulmfit.classifier_api import TextClassifier

    members = {seed: [A.main_clf_dir(a.dataset, d, seed) for d in ("fwd", "bwd")] for seed in a.seeds}
    for seed, dirs in members.items():  # before any work: a missing model is the common mistake
        missing = [str(d) for d in dirs if not (d / "config.json").exists()]
        if missing:
            ap.error(f"no classifier in {', '.join(missing)}: run `bench/accuracy.py main --datasets {a.dataset} "
                     f"--seeds {seed} --methods ulmfit-fwd,ulmfit-bwd,ulmfit-ens` first")
    _, train, test = A.load_dataset(a.dataset)
    y = np.asarray(test.labels)
    base = np.asarray(baselines.tfidf_lr(list(train.texts), list(train.labels), list(test.texts), 0)["pred"])
    ens = {seed: np.asarray(TextClassifier.load(dirs).predict(list(test.texts))) for seed, dirs in members.items()}
    res = compare(y, ens, base)
    ov = np.asarray(overlap(train.texts, test.texts))
    near = ov > NEAR_COPY
    res["near_copies"] = int(near.sum())
    res["near_copy_errors"] = {"tfidf": int(((base != y) & near).sum()),
                               **{f"ensemble seed {s}": int(((p != y) & near).sum()) for s, p in ens.items()}}
    res["every_seed_examples"] = [{"index": i, "label": str(y[i]), "predicted": [str(ens[s][i]) for s in a.seeds],
                                   "tfidf": str(base[i]), "start": test.texts[i][:90]}
                                  for i in res["ulmfit_only_every_seed"]]

    print(f"## {a.dataset}: ULMFiT fwd+bwd ensemble against TF-IDF + logistic regression, test errors "
          f"({len(y)} texts)\n")
    print(f"TF-IDF: {res['baseline_errors']} errors.\n")
    print("| seed | ensemble accuracy | errors | also TF-IDF's | ULMFiT only | TF-IDF only |")
    print("|---|---|---|---|---|---|")
    for s, r in res["per_seed"].items():
        print(f"| {s} | {100 * r['accuracy']:.2f} | {r['errors']} | {r['shared']} | {r['ulmfit_only']} | "
              f"{r['baseline_only']} |")
    print(f"\nULMFiT-only errors made with every seed: {len(res['ulmfit_only_every_seed'])}; their confusions "
          f"over all seeds (true -> predicted): "
          + ", ".join(f"{k} ({v})" for k, v in res["ulmfit_only_confusions"].items()))
    for e in res["every_seed_examples"]:
        print(f"- #{e['index']} {e['label']} -> {'/'.join(e['predicted'])}: {e['start']!r}")
    print(f"\nTest texts with over {100 * NEAR_COPY:.0f}% of their word {NGRAM}-grams in one training text: "
          f"{res['near_copies']}; errors among them: "
          + ", ".join(f"{k} {v}" for k, v in res["near_copy_errors"].items()))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
