#!/usr/bin/env python
"""Which epoch should a classifier trained on a few hundred labels keep?

The library keeps the epoch with the best validation macro-F1 (a stratified 10% of the labels).
At 100 labels that split holds 10 texts, and in the sample-efficiency benchmark some runs kept
an early epoch that predicts the majority class for nearly every test text (Rotten Tomatoes, 100
labels, backward, seed 1: test accuracy 57.85% = the majority class, macro-F1 0.367, best epoch
1 of 6). This script measures selection rules instead of guessing: it trains the benchmark's
semi-supervised ULMFiT classifiers with every epoch run (no early stopping), and after each epoch
records the validation metrics the trainer sees and the test metrics it must not see. Each rule
is then replayed on the same runs (patience included), so rules are compared on identical
training trajectories, seed by seed.

Rules (all on the validation split; "stage 4" is the last, fully unfrozen stage):
- ``f1-first``: the library's rule before commit a29d19f: the first epoch with the best macro-F1,
  early stopping after 3 last-stage epochs without a strict improvement;
- ``f1-last``: the same, but a tie goes to the later epoch (and counts as an improvement);
- ``f1-then-loss``: the best macro-F1, a tie going to the lower validation loss;
- ``loss``: the lowest validation loss, patience 3;
- ``last``: the last epoch, no selection (fastai's default: no early stopping);
- ``f1-stage4``: the best macro-F1 among the last stage's epochs only, ties to the later;
- ``margin``: the last epoch, unless an earlier one got more than one validation text more right
  (the epoch with the best validation accuracy, ties to the later, is kept only then): a rule that
  needs no size threshold, since one text is a large step on a small split and a small one on a
  large split. Every epoch runs, as with ``last``.

Usage::

    .venv/bin/python bench/epoch_select.py run --sizes 100 200 --seeds 0 1 2 3 4 5
    .venv/bin/python bench/epoch_select.py run --dataset bbc-news --sizes 1775  # all of its labels
    .venv/bin/python bench/epoch_select.py run --dataset bbc-news --sizes 1775 --last-epochs 6
    .venv/bin/python bench/epoch_select.py report

Results: ``bench/results/epoch_select.jsonl`` (one line per run, its epochs inside); the test
probabilities of every epoch go to the work folder (``$ULMFIT_BENCH_DIR``) for the ensemble rows.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import accuracy as A  # noqa: E402  (the benchmark's data, LMs and recipe: the same runs)

RESULTS = ROOT / "bench" / "results" / "epoch_select.jsonl"
DS = "rotten-tomatoes"
PATIENCE = 3


def train_probe(size: int, seed: int, backwards: bool, ds: str = DS, last_epochs: int | None = None) -> dict:
    """One semi-supervised run of the accuracy benchmark (`size` labels of dataset `ds`; all of
    them when `size` is at least their number), with every epoch run and evaluated on the
    validation and test sets. `last_epochs`: the last (fully unfrozen) stage runs this many epochs
    (one slanted triangular schedule over all of them) instead of the recipe's."""
    from dataclasses import replace

    import numpy as np

    from ulmfit import checkpoint as ckpt
    from ulmfit.classifier_api import _reverse, train_classifier
    from ulmfit.data.clas import ClassificationData
    from ulmfit.text.tokenize import TokenizerConfig
    from ulmfit.train import classify
    from ulmfit.train.classify import predict_probs
    from ulmfit.train.metrics import classification_report

    folder, train, test = A.load_dataset(ds)
    sub = A.stratified_sample(train, size, seed)
    size = min(size, len(train))  # all labels: recorded as their number
    lm_dir, _ = A.target_lm(ds, backwards, folder / "train.csv")
    _, lm_cfg, vocab = ckpt.load_model(lm_dir)
    labels = sub.label_names()
    test_d = ClassificationData.from_labeled(test, TokenizerConfig.from_dict(lm_cfg["tokenizer"]), vocab, None,
                                             labels, progress=False)
    test_ids = _reverse(test_d.ids) if backwards else test_d.ids
    y = np.asarray(test_d.labels)
    epochs, probs = [], []
    orig_log = classify.ClassifierTrainer.log

    def log(self, rec):  # the trainer's per-epoch record, plus the test set's view of this epoch
        p = predict_probs(self.model, test_ids, 64, self.pad_id, self.device, self.use_bf16)
        rep = classification_report(y, p.argmax(1), labels)
        probs.append(p)
        epochs.append({k: rec[k] for k in ("epoch", "stage", "valid_loss", "valid_accuracy", "valid_macro_f1")}
                      | {"test_accuracy": rep["accuracy"], "test_macro_f1": rep["macro_f1"]})
        orig_log(self, rec)

    # the dataset's recipe (`A.recipe`, as its benchmark rows); every epoch runs, the rules replay patience
    cfg = A.recipe(ds, size, seed, backwards=backwards, patience=99)
    if last_epochs:
        cfg = replace(cfg, stage_epochs=cfg.stage_epochs[:-1] + (last_epochs,))
    out = A.WORK / ds / (f"epsel-n{size}-{'bwd' if backwards else 'fwd'}-s{seed}" + (f"-last{last_epochs}" if last_epochs else ""))
    t0 = time.time()
    classify.ClassifierTrainer.log = log
    try:
        train_classifier(lm_dir, sub, out, cfg=cfg, overwrite=True, progress=False)
    finally:
        classify.ClassifierTrainer.log = orig_log
    np.save(out / "test_probs.npy", np.stack(probs))
    np.save(out / "test_labels.npy", y)
    return {"dataset": ds, "n_labels": size, "seed": seed, "backwards": backwards, "epochs": epochs,
            "n_valid": split_size(sub, seed),
            **({"last_epochs": last_epochs} if last_epochs else {}), "stage_epochs": list(cfg.stage_epochs),
            "majority": float(np.bincount(y).max() / len(y)), "seconds": time.time() - t0,
            "commit": A.commit(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "dir": str(out)}


# ----------------------------------------------------------------------------------------------
# rules, replayed on the recorded epochs; each returns the index of the epoch it keeps
# ----------------------------------------------------------------------------------------------
def _replay(eps: list, score, ties_later: bool, patience: int = PATIENCE) -> int:
    """The trainer's loop: best-so-far by `score` (higher is better), patience counted in the last
    stage only, stop after `patience` last-stage epochs without improvement."""
    last_stage = max(e["stage"] for e in eps)
    best, best_i, bad = None, None, 0
    for i, e in enumerate(eps):
        s = score(e)
        if best is None or s > best or (ties_later and s == best):
            best, best_i, bad = s, i, 0
        elif e["stage"] == last_stage:
            bad += 1
            if bad >= patience:
                break
    return best_i


def _stage4(eps: list) -> int:
    last_stage = max(e["stage"] for e in eps)
    cand = [i for i, e in enumerate(eps) if e["stage"] == last_stage]
    return max(cand, key=lambda i: (eps[i]["valid_macro_f1"], i))


def _margin(eps: list, n_valid: int | None) -> int:
    if not n_valid:
        raise ValueError("the margin rule needs the run's number of validation texts")
    last = len(eps) - 1
    best = max(range(len(eps)), key=lambda i: (eps[i]["valid_accuracy"], i))
    # accuracies are counts over n_valid: more than one text more right means a gap of 2 texts or more
    gained = round((eps[best]["valid_accuracy"] - eps[last]["valid_accuracy"]) * n_valid)
    return best if gained > 1 else last


# each rule takes a run's epochs and its number of validation texts (only `margin` uses it)
RULES = {
    "f1-first": lambda eps, n_valid=None: _replay(eps, lambda e: e["valid_macro_f1"], ties_later=False),
    "f1-last": lambda eps, n_valid=None: _replay(eps, lambda e: e["valid_macro_f1"], ties_later=True),
    "f1-then-loss": lambda eps, n_valid=None: _replay(eps, lambda e: (e["valid_macro_f1"], -e["valid_loss"]),
                                                      ties_later=False),
    "loss": lambda eps, n_valid=None: _replay(eps, lambda e: -e["valid_loss"], ties_later=False),
    "last": lambda eps, n_valid=None: len(eps) - 1,
    "f1-stage4": lambda eps, n_valid=None: _stage4(eps),
    "margin": _margin,
}


_N_VALID: dict = {}


def n_valid(r: dict) -> int:
    """The run's number of validation texts: recorded by newer runs, else recomputed with the same
    sample and split as the run (`A.stratified_sample`, then the library's stratified 10%)."""
    if r.get("n_valid"):
        return r["n_valid"]
    key = (r.get("dataset", DS), r["n_labels"], r["seed"])
    if key not in _N_VALID:
        _N_VALID[key] = valid_count(*key)
    return _N_VALID[key]


def split_size(sub, seed: int) -> int:
    """Validation texts that training on `sub` holds out (the library's stratified 10%)."""
    from ulmfit.data.labeled import stratified_split

    return len(stratified_split(sub, 0.1, seed)[1])


def valid_count(ds: str, size: int, seed: int) -> int:
    _, train, _ = A.load_dataset(ds)
    return split_size(A.stratified_sample(train, size, seed), seed)


def keep(name: str, r: dict) -> int:
    """The index of the epoch that rule `name` keeps in run `r`."""
    return RULES[name](r["epochs"], n_valid(r) if name == "margin" else None)


def run_key(r: dict) -> tuple:
    """What identifies a probe run (rows without a dataset are Rotten Tomatoes, the first probed;
    rows without `last_epochs` ran the recipe's last stage)."""
    return r.get("dataset", DS), r["n_labels"], r.get("last_epochs"), r["seed"], r["backwards"]


def load(path: Path = RESULTS) -> list[dict]:
    rows = [json.loads(l) for l in path.read_text().splitlines() if l.strip()] if path.exists() else []
    latest = {}
    for r in rows:
        latest[run_key(r)] = r
    return list(latest.values())


def ensemble_metrics(fwd: dict, bwd: dict, i: int, j: int) -> tuple[float, float]:
    import numpy as np

    from ulmfit.train.metrics import classification_report

    pf, pb = (np.load(Path(r["dir"]) / "test_probs.npy") for r in (fwd, bwd))
    y = np.load(Path(fwd["dir"]) / "test_labels.npy")
    pred = ((pf[i] + pb[j]) / 2).argmax(1)
    rep = classification_report(y, pred, [str(k) for k in range(pf.shape[2])])
    return rep["accuracy"], rep["macro_f1"]


def report(rows: list[dict]) -> str:
    def fmt(xs):
        xs = [100 * x for x in xs]
        return f"{statistics.mean(xs):.2f} ± {statistics.stdev(xs):.2f}" if len(xs) > 1 else f"{xs[0]:.2f}"

    lines = []
    for ds, size, last in sorted({run_key(r)[:3] for r in rows}, key=lambda k: (k[0], k[1], k[2] or 0)):
        of = [r for r in rows if run_key(r)[:3] == (ds, size, last)]
        prefix = "" if ds == DS else f"{ds}: "  # Rotten Tomatoes, the first dataset probed, unnamed
        if last:
            prefix += f"last stage {last} epochs, "
        for bw in (False, True):
            rs = sorted((r for r in of if r["backwards"] == bw), key=lambda r: r["seed"])
            if not rs:
                continue
            lines.append(f"\n{prefix}{size} labels, {'backward' if bw else 'forward'} ({len(rs)} seeds; majority class "
                         f"{100 * rs[0]['majority']:.1f}%)\n")
            lines.append("| rule | test accuracy | test macro-F1 | collapsed runs (macro-F1 < 0.45) | kept epochs |")
            lines.append("|---|---|---|---|---|")
            for name in RULES:
                kept = [keep(name, r) for r in rs]
                acc = [r["epochs"][i]["test_accuracy"] for r, i in zip(rs, kept)]
                f1 = [r["epochs"][i]["test_macro_f1"] for r, i in zip(rs, kept)]
                lines.append(f"| {name} | {fmt(acc)} | {fmt(f1)} | {sum(f < 0.45 for f in f1)} | "
                             f"{' '.join(str(r['epochs'][i]['epoch']) for r, i in zip(rs, kept))} |")
            best = [max(e["test_accuracy"] for e in r["epochs"]) for r in rs]
            lines.append(f"| (oracle: best test epoch) | {fmt(best)} | | | |")
        pairs = [(f, b) for f in of for b in of if not f["backwards"] and b["backwards"] and f["seed"] == b["seed"]]
        missing = [r["dir"] for p in pairs for r in p if not (Path(r["dir"]) / "test_probs.npy").is_file()]
        if missing:  # the probabilities live in each run's cache folder, not in the repository
            lines.append(f"\n{prefix}{size} labels, forward + backward ensemble: not recomputed, the runs' test "
                         f"probabilities are not on this machine (e.g. {missing[0]}/test_probs.npy; `run` again "
                         "with a new --results to make them)\n")
        elif pairs:
            pairs.sort(key=lambda p: p[0]["seed"])
            lines.append(f"\n{prefix}{size} labels, forward + backward ensemble ({len(pairs)} seeds)\n")
            lines.append("| rule | test accuracy | test macro-F1 | collapsed runs (macro-F1 < 0.45) |")
            lines.append("|---|---|---|---|")
            for name in RULES:
                m = [ensemble_metrics(f, b, keep(name, f), keep(name, b)) for f, b in pairs]
                lines.append(f"| {name} | {fmt([a for a, _ in m])} | {fmt([f for _, f in m])} | "
                             f"{sum(f < 0.45 for _, f in m)} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=["run", "report"])
    ap.add_argument("--dataset", default=DS, choices=A.DATASETS)
    ap.add_argument("--sizes", nargs="+", type=int, default=[100, 200],
                    help="label counts (at least the training set's size: all labels)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--directions", nargs="+", choices=["fwd", "bwd"], default=["fwd", "bwd"])
    ap.add_argument("--last-epochs", type=int, default=None,
                    help="the last (fully unfrozen) stage runs this many epochs instead of the recipe's")
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if args.last_epochs is not None and args.last_epochs < 1:
        ap.error("--last-epochs must be at least 1")
    if args.what == "report":
        print(report(load(args.results)))
        return
    A._maybe_jemalloc()
    done = {run_key(r) for r in load(args.results)}
    for size in args.sizes:
        for seed in args.seeds:
            for d in args.directions:
                bw = d == "bwd"
                if run_key({"dataset": args.dataset, "n_labels": size, "last_epochs": args.last_epochs,
                            "seed": seed, "backwards": bw}) in done:
                    continue
                print(f"== {args.dataset}, {size} labels, seed {seed}, {d}"
                      + (f", last stage {args.last_epochs} epochs" if args.last_epochs else ""), flush=True)
                row = train_probe(size, seed, bw, args.dataset, args.last_epochs)
                kept = {k: row["epochs"][keep(k, row)]["test_accuracy"] for k in RULES}
                print("   test accuracy by rule: " + ", ".join(f"{k} {100 * v:.2f}" for k, v in kept.items())
                      + f"  ({row['seconds']:.0f}s)", flush=True)
                args.results.parent.mkdir(parents=True, exist_ok=True)
                with open(args.results, "a") as f:
                    f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
