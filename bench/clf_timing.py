"""How well the demo's time budget knows the classifier: `ulmfit.classifier_api.time_classifier`'s
estimate for a sample of a benchmark's training texts beside the measured training time of the
classifier on that sample, in one process, under jemalloc as the `ulmfit` command runs.

    .venv/bin/python bench/clf_timing.py --n 5793 --lm ulmfit-demo/lm   # estimate, then train (~5 min here)
    .venv/bin/python bench/clf_timing.py --repeats 3 --no-train          # the estimate alone, 3 times

`--lm` is a fine-tuned LM folder (the demo's `ulmfit-demo/lm`); without it the shipped model's
encoder is used for both (the speed is the same; the accuracy is not reported). Rows go to
bench/results/clf_timing.jsonl.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import accuracy as A  # noqa: E402

RESULTS = A.ROOT / "bench" / "results" / "clf_timing.jsonl"


def measure(train, n_docs: int, lm=None, repeats: int = 1, do_train: bool = True) -> dict:
    """The estimate of `repeats` timings for `n_docs` of the LabeledTexts `train`, and (`do_train`)
    the measured seconds of the classifier's training (`fit`: every epoch and its validation) on
    the same seeded sample the demo would draw."""
    from ulmfit.classifier_api import time_classifier, train_classifier

    estimates, probe_s = [], []
    for _ in range(repeats):
        t = time.time()
        timing = time_classifier(lm, train)
        probe_s.append(round(time.time() - t, 1))
        estimates.append(round(timing.seconds(n_docs), 1))
    row = {"n_docs": n_docs, "estimate_s": estimates, "probe_s": probe_s, "timing": timing.to_dict()}
    if do_train:
        with tempfile.TemporaryDirectory() as tmp:
            res = train_classifier(lm, train, Path(tmp) / "clf", max_train=None if n_docs >= len(train) else n_docs,
                                   progress=False, n_workers=1)
        row["measured_s"] = round(res["wall_s"], 1)
        row["estimate_over_measured"] = round(estimates[-1] / res["wall_s"], 3)
    return row


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="rotten-tomatoes", choices=A.DATASETS)
    ap.add_argument("--n", type=int, default=None, help="training texts (default: all)")
    ap.add_argument("--lm", type=Path, default=None, help="LM folder (default: the shipped model)")
    ap.add_argument("--repeats", type=int, default=1, help="timings before the training run")
    ap.add_argument("--no-train", action="store_true", help="only the estimate")
    ap.add_argument("--results", type=Path, default=RESULTS)
    a = ap.parse_args(argv)
    if a.repeats < 1 or (a.n is not None and a.n < 2):
        ap.error("--repeats must be at least 1 and --n at least 2")
    A._maybe_jemalloc()
    _, train, _ = A.load_dataset(a.dataset)
    n = len(train) if a.n is None else min(a.n, len(train))
    row = {"dataset": a.dataset, "lm": str(a.lm) if a.lm else "shipped",
           **measure(train, n, a.lm, a.repeats, not a.no_train),
           "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "commit": A.commit()}
    a.results.parent.mkdir(parents=True, exist_ok=True)
    with open(a.results, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row))


if __name__ == "__main__":
    main()
