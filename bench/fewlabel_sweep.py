#!/usr/bin/env python
"""The classifier recipe at 100-1,000 labels, chosen on a held-out DEV set (never the test set).

At these sizes the recipe's own validation split holds 10-100 texts, too few to tell recipes
apart (or even epochs: the library keeps the last one, see bench/epoch_select.py). So this sweep
sets aside a fixed, stratified dev set of `--dev` labeled texts from the training set (seed
`DEV_SEED`), draws each run's labels from the rest exactly as ``accuracy.py sizes`` does (a
stratified sample per size and seed), trains the classifier with the library's recipe plus a
variant's changes (its 10% validation split included), and scores it on the dev set (what a
choice may rest on) and, for the record, on the test set. The LM is the semi-supervised one that
``accuracy.py`` caches (fine-tuned on all training text, labels unused; the dev texts are part of
that text, as the unlabeled texts of a real task would be). The forward + backward ensemble of a
variant is scored when both directions have run. Rows go to bench/results/fewlabel_sweep.jsonl;
a run already there is skipped.

    .venv/bin/python bench/fewlabel_sweep.py run --variants base steps300 dm1 --directions fwd
    .venv/bin/python bench/fewlabel_sweep.py report
    .venv/bin/python bench/fewlabel_sweep.py --list
"""

from __future__ import annotations

import argparse
import datetime as _dt
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

RESULTS = ROOT / "bench" / "results" / "fewlabel_sweep.jsonl"
DEV_SEED = 1234
DEV_N = 2000


def _last_steps(steps: int):
    """A last stage of at least `steps` optimizer steps, with no cap on its epochs (the library
    stops at `MAX_LAST_EPOCHS`)."""
    def over(n_train: int, bs: int, base) -> dict:
        per_epoch = max(1, -(-n_train // bs))
        return {"stage_epochs": base.stage_epochs[:-1] + (max(base.stage_epochs[-1], -(-steps // per_epoch)),)}
    return over


def _rates(f: float):
    return lambda n_train, bs, base: {"stage_lrs": tuple(f * x for x in base.stage_lrs)}


# name -> overrides of the sized library recipe, as a function of (training texts after the
# validation split, batch size, the sized recipe); applied after `ClassifierTrainConfig.for_data`
VARIANTS = {
    "base": lambda n, bs, base: {},  # the library's recipe at the row's commit
    "steps300": _last_steps(300),  # twice the library's minimum of 150 steps in the last stage
    "steps600": _last_steps(600),
    "head3": lambda n, bs, base: {"stage_epochs": (3, 3, 3) + base.stage_epochs[3:]},  # longer unfreezing stages
    "dm1": lambda n, bs, base: {"drop_mult": 1.0},  # the published dropouts, not half of them
    "dm0.25": lambda n, bs, base: {"drop_mult": 0.25},
    "lr0.5x": _rates(0.5),  # fastai's rates
    "lr2x": _rates(2.0),
    # no validation split: every label trains, the last epoch is kept (what the library does anyway
    # up to SELECT_LAST_MAX_VALID validation texts); the "validation" is the training texts
    "novalid": lambda n, bs, base: {"select": "last"},
}
NO_SPLIT = {"novalid"}  # variants that train on every label and "validate" on the same texts


def dev_split(train):
    """(dev set, the pool the labels are drawn from): a fixed stratified split of the training set."""
    dev_idx = A.stratified_indices(train, DEV_N, DEV_SEED)
    held = set(dev_idx)
    return train.subset(dev_idx), train.subset(i for i in range(len(train)) if i not in held)


def variant_config(name: str, size: int, seed: int, backwards: bool):
    """The library's recipe for `size` labels (as `accuracy.py sizes` trains it) with the variant's
    changes; its minimum-steps rule is off when the variant sets the epochs itself."""
    from dataclasses import replace

    base = A.clf_config(size, seed, backwards=backwards)
    over = VARIANTS[name](int(0.9 * size), base.bs, base)
    if "stage_epochs" in over:
        over["min_last_steps"] = 0
    return replace(base, **over)


def _metrics(probs, labels: list, data) -> dict:
    import numpy as np

    from ulmfit.train.metrics import classification_report

    index = {l: i for i, l in enumerate(labels)}
    rep = classification_report(np.array([index[l] for l in data.labels]), np.asarray(probs).argmax(1), labels)
    return {"accuracy": rep["accuracy"], "macro_f1": rep["macro_f1"]}


def _probs_path(ds: str, size: int, seed: int, v: str, d: str) -> Path:
    return A.WORK / ds / "fewlabel-probs" / f"n{size}-s{seed}-{v}-{d}.npz"


def _predict(clf, data, cache: dict):
    """`clf.predict_proba(data.texts)` for a one-member classifier, with the texts tokenised once per
    vocabulary for the whole sweep (tokenising 4,562 texts took longer than training at 100 labels)."""
    from ulmfit.classifier_api import _reverse
    from ulmfit.data.clas import _encode
    from ulmfit.train.classify import predict_probs
    from ulmfit.train.precision import predicts_in_bf16

    (model, cfg, vocab, tok, sp, backwards, _), = clf.members
    key = (id(data), tuple(vocab.itos), tok.kind, sp, backwards)
    if key not in cache:
        ids = _encode(data.texts, tok, vocab, sp, None, False)
        cache[key] = _reverse(ids) if backwards else ids
    return predict_probs(model, cache[key], 64, vocab.stoi["xxpad"], use_bf16=predicts_in_bf16(cfg, clf.device),
                         multi_label=False, progress=False)


def write_row(path: Path, key: dict, labels: list, pdev, ptest, dev, test, seconds: float, extra: dict) -> dict:
    """Score a run's dev and test probabilities and append its row (`key`, the scores, `extra`, the
    time, date and commit) to the results file `path`; returns the row."""
    dv, ts = _metrics(pdev, labels, dev), _metrics(ptest, labels, test)
    row = {**key, "dev_accuracy": dv["accuracy"], "dev_macro_f1": dv["macro_f1"],
           "test_accuracy": ts["accuracy"], "test_macro_f1": ts["macro_f1"], **extra,
           "seconds": round(seconds, 1), "dev_n": len(dev), "dev_seed": DEV_SEED,
           "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "commit": A.commit()}
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")
    return row


def done_keys(path: Path, fields: tuple[str, ...]) -> set[tuple]:
    """The `fields` of every row already in the results file `path`: the runs to skip."""
    if not path.exists():
        return set()
    return {tuple(json.loads(line).get(f) for f in fields) for line in path.read_text().splitlines() if line.strip()}


def run(a) -> None:
    import numpy as np

    from ulmfit.classifier_api import TextClassifier

    A._maybe_jemalloc()
    done = done_keys(a.results, ("dataset", "n_labels", "seed", "direction", "variant"))
    folder, train, test = A.load_dataset(a.dataset)
    dev, pool = dev_split(train)
    print(f"{a.dataset}: dev set {len(dev):,} texts (seed {DEV_SEED}), labels drawn from the other {len(pool):,}",
          flush=True)
    lms, enc = {}, {}
    for size in a.sizes:
        for seed in a.seeds:
            sub = A.stratified_sample(pool, size, seed)
            for v in a.variants:
                for d in (*a.directions, "ens"):
                    key = (a.dataset, size, seed, d, v)
                    pp = _probs_path(a.dataset, size, seed, v, d)
                    if key in done:
                        continue
                    t0 = time.time()
                    if d == "ens":  # the mean of the members' probabilities, as TextClassifier averages them
                        members = [_probs_path(a.dataset, size, seed, v, x) for x in ("fwd", "bwd")]
                        if not all(m.exists() for m in members):
                            continue
                        zs = [np.load(m) for m in members]
                        labels = [str(x) for x in zs[0]["labels"]]
                        pdev, ptest = (np.mean([z[k] for z in zs], 0) for k in ("dev", "test"))
                        extra = {}
                    else:
                        bw = d == "bwd"
                        if bw not in lms:
                            lms[bw] = A.target_lm(a.dataset, bw, folder / "train.csv")
                        out = A.WORK / a.dataset / f"fewlabel-n{size}-s{seed}-{v}-{d}"
                        shutil.rmtree(out, ignore_errors=True)  # a run of a minute or two starts over, never resumes
                        # train_and_eval's own test score is not used (one text, not 2,562, to save time):
                        # the dev and test probabilities below are
                        r = A.train_and_eval(lms[bw][0], sub, test.subset([0]), out, variant_config(v, size, seed, bw),
                                             valid=sub if v in NO_SPLIT else None)
                        clf = TextClassifier.load(out)
                        labels, (pdev, ptest) = clf.labels, (_predict(clf, x, enc) for x in (dev, test))
                        pp.parent.mkdir(parents=True, exist_ok=True)
                        np.savez(pp, dev=pdev, test=ptest, labels=np.array(labels))
                        if not a.keep:
                            shutil.rmtree(out, ignore_errors=True)
                        extra = {"best_epoch": r["best_epoch"], "epochs": r["epochs"], "clf": r["clf"],
                                 "lm_perplexity": lms[bw][1].get("valid_perplexity")}
                    row = write_row(a.results, {"dataset": a.dataset, "n_labels": size, "seed": seed, "direction": d,
                                                "variant": v}, labels, pdev, ptest, dev, test, time.time() - t0, extra)
                    print(f"== n={size} seed={seed} {v:<9} {d}: dev {row['dev_accuracy']:.4f} "
                          f"(F1 {row['dev_macro_f1']:.4f})  test {row['test_accuracy']:.4f}  {row['seconds']:.0f}s",
                          flush=True)


def load(path: Path = RESULTS) -> list[dict]:
    if not path.exists():
        return []
    rows = {}
    for line in path.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            rows[(r["dataset"], r["n_labels"], r["seed"], r["direction"], r["variant"])] = r  # the latest wins
    return list(rows.values())


def report(rows: list[dict], metric: str = "dev_accuracy") -> str:
    """Per dataset and direction: each variant's mean over seeds at each size, and its mean
    difference from `base` paired by (size, seed), on `metric`."""
    out = []
    for ds in sorted({r["dataset"] for r in rows}):
        for d in ("fwd", "bwd", "ens"):
            rs = [r for r in rows if r["dataset"] == ds and r["direction"] == d]
            if not rs:
                continue
            sizes = sorted({r["n_labels"] for r in rs})
            idx = {(r["variant"], r["n_labels"], r["seed"]): r[metric] for r in rs}
            out.append(f"\n{ds}, {d}, {metric} (%: mean over seeds; last column: paired difference from base, "
                       "mean over every size and seed both have)")
            out.append("| variant | " + " | ".join(str(s) for s in sizes) + " | minus base (pairs) |")
            out.append("|---|" + "---|" * (len(sizes) + 1))
            variants = sorted({r["variant"] for r in rs}, key=lambda v: (v != "base", list(VARIANTS).index(v)
                                                                          if v in VARIANTS else 99, v))
            for v in variants:
                cells = []
                for s in sizes:
                    xs = [x for (vv, ss, _), x in idx.items() if vv == v and ss == s]
                    cells.append(f"{100 * statistics.mean(xs):.2f} (n={len(xs)})" if xs else "-")
                diffs = [x - idx[("base", s, sd)] for (vv, s, sd), x in idx.items()
                         if vv == v and ("base", s, sd) in idx]
                dcell = (f"{100 * statistics.mean(diffs):+.2f} ({len(diffs)}; better in "
                         f"{sum(x > 0 for x in diffs)}, worse in {sum(x < 0 for x in diffs)})"
                         if diffs and v != "base" else "")
                out.append(f"| {v} | " + " | ".join(cells) + f" | {dcell} |")
    return "\n".join(out)


def harness_args(description: str) -> argparse.ArgumentParser:
    """The arguments of every dev-set harness (this sweep, selftrain_probe.py): run or report, the
    dataset, the label sizes and the seeds."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("what", nargs="?", choices=["run", "report"], default="report")
    ap.add_argument("--dataset", default="rotten-tomatoes", choices=A.DATASETS)
    ap.add_argument("--sizes", nargs="+", type=int, default=A.SIZES)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    return ap


def main(argv=None) -> None:
    ap = harness_args(__doc__.splitlines()[0])
    ap.add_argument("--directions", nargs="+", choices=["fwd", "bwd"], default=["fwd"])
    ap.add_argument("--variants", nargs="+", default=["base"])
    ap.add_argument("--metric", default="dev_accuracy",
                    choices=["dev_accuracy", "dev_macro_f1", "test_accuracy", "test_macro_f1"])
    ap.add_argument("--keep", action="store_true",
                    help="keep the trained classifiers (default: deleted once scored; their probabilities are kept)")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--results", type=Path, default=RESULTS)
    a = ap.parse_args(argv)
    if a.list:
        for k in VARIANTS:
            print(k)
        return
    unknown = [v for v in a.variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants: {unknown} (see --list)")
    if a.what == "run":
        run(a)
    else:
        print(report(load(a.results), a.metric))


if __name__ == "__main__":
    main()
