#!/usr/bin/env python
"""Classifier recipe variants on one dataset, chosen by the VALIDATION split only.

Each variant trains the ULMFiT classifier (stage 3) from the same fine-tuned LM that
bench/accuracy.py caches (run `accuracy.py main` first) and records the best validation accuracy
and macro-F1 (what the recipe may be tuned on) and, for the record, the test accuracy. Rows go to
bench/results/recipe_sweep.jsonl; a variant already there is skipped.

    .venv/bin/python bench/recipe_sweep.py --dataset rotten-tomatoes --variants base ep4 dm1
    .venv/bin/python bench/recipe_sweep.py --list
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

import accuracy as A  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "recipe_sweep.jsonl"
FASTAI_LRS = (2e-2, 1e-2, 5e-3, 1e-3)

# name -> overrides of the library's ClassifierTrainConfig (after accuracy.clf_config)
VARIANTS = {
    "base": {},  # the library's defaults at the row's commit (fastai's rates before the change to twice them)
    "fastai-lrs": {"stage_lrs": FASTAI_LRS},
    "ep4": {"stage_epochs": (1, 1, 1, 4)},
    "ep6": {"stage_epochs": (1, 1, 1, 6)},  # 20 Newsgroups: still rising at ep4's last epoch
    "ep8": {"stage_epochs": (1, 1, 1, 8)},
    "dm0.3": {"drop_mult": 0.3},
    "dm1": {"drop_mult": 1.0},
    "lr2x": {"stage_lrs": tuple(2 * x for x in FASTAI_LRS)},
    "lr3x": {"stage_lrs": tuple(3 * x for x in FASTAI_LRS)},
    "lr4x": {"stage_lrs": tuple(4 * x for x in FASTAI_LRS)},
    "lr2x-dm0.3": {"stage_lrs": tuple(2 * x for x in FASTAI_LRS), "drop_mult": 0.3},
    "lr0.5x": {"stage_lrs": tuple(0.5 * x for x in FASTAI_LRS)},
    "bs16": {"bs": 16},
    "bs32": {"bs": 32},  # the default from 1,000 to 20,000 examples, by name (a "base" row of another LM stays)
    "bs64": {"bs": 64},
    "bs128": {"bs": 128},
    "bs64-lr3x": {"bs": 64, "stage_lrs": tuple(3 * x for x in FASTAI_LRS)},  # the larger batch at a higher rate
    "bs64-ep3": {"bs": 64, "stage_epochs": (1, 1, 1, 3)},  # ... or with a longer last stage
    "full2": {"stage_groups": (1, 0), "stage_epochs": (1, 4), "stage_lrs": (2e-2, 2e-3)},
    "ep4-dm1": {"stage_epochs": (1, 1, 1, 4), "drop_mult": 1.0},
    "ep4-lr2x": {"stage_epochs": (1, 1, 1, 4), "stage_lrs": tuple(2 * x for x in FASTAI_LRS)},
    "ep4-lastlr2x": {"stage_epochs": (1, 1, 1, 4), "stage_lrs": FASTAI_LRS[:3] + (2e-3,)},
    "ep4-lastlr4x": {"stage_epochs": (1, 1, 1, 4), "stage_lrs": FASTAI_LRS[:3] + (4e-3,)},
    # the published ULMFiT scripts' classifier weight decay (L2 1e-6) in place of fastai v1's decoupled 0.01
    "wd1e-6": {"wd": 1e-6},
}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="rotten-tomatoes", choices=A.DATASETS)
    ap.add_argument("--direction", default="fwd", choices=["fwd", "bwd"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variants", nargs="*", default=["base"])
    ap.add_argument("--lm-epochs", type=int, default=None,
                    help="fine-tune the LM for up to this many epochs (early stopping, patience 1) instead of "
                         "accuracy.py's LM_EPOCHS; cached as lm-all-eN")
    ap.add_argument("--lm-wd", type=float, default=None,
                    help="fine-tune the LM with this weight decay (decoupled, AdamW) instead of the library's "
                         "0.01; cached as lm-all-wdX (the published scripts used 1e-7, as L2)")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--results", type=Path, default=RESULTS)
    a = ap.parse_args(argv)
    if a.list:
        for k, v in VARIANTS.items():
            print(f"{k:<14} {v}")
        return
    unknown = [v for v in a.variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants: {unknown} (see --list)")
    A._maybe_jemalloc()
    done = set()
    if a.results.exists():
        for line in a.results.read_text().splitlines():
            r = json.loads(line)
            done.add((r["dataset"], r["direction"], r["seed"], r.get("lm_epochs"), r.get("lm_wd"), r["variant"]))
    folder, train, test = A.load_dataset(a.dataset)
    bw = a.direction == "bwd"
    over = {"epochs": a.lm_epochs} if a.lm_epochs else {}
    tag = "all" + (f"-e{a.lm_epochs}" if a.lm_epochs else "")
    if a.lm_wd is not None:
        over["wd"], tag = a.lm_wd, tag + f"-wd{a.lm_wd:g}"
    lm_dir, lm_info = A.finetuned_lm(a.dataset, bw, folder / "train.csv", tag, **over)
    for v in a.variants:
        if (a.dataset, a.direction, a.seed, a.lm_epochs, a.lm_wd, v) in done:
            print(f"skip {v} (in {a.results})")
            continue
        cfg = A.clf_config(len(train), a.seed, backwards=bw, **VARIANTS[v])
        out = A.WORK / a.dataset / (f"sweep-{a.direction}-s{a.seed}-{v}" + (f"-lm{a.lm_epochs}" if a.lm_epochs else "")
                                    + (f"-lmwd{a.lm_wd:g}" if a.lm_wd is not None else ""))
        t0 = time.time()
        r = A.train_and_eval(lm_dir, train, test, out, cfg)
        hist = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()]
        best = next(h for h in hist if h["epoch"] == r["best_epoch"])
        row = {"dataset": a.dataset, "direction": a.direction, "seed": a.seed, "variant": v, "lm_epochs": a.lm_epochs,
               **({"lm_wd": a.lm_wd} if a.lm_wd is not None else {}),
               "lm_perplexity": lm_info.get("valid_perplexity"), "lm_epochs_run": lm_info.get("epochs_run"),
               "overrides": {k: list(x) if isinstance(x, tuple) else x for k, x in VARIANTS[v].items()},
               "valid_accuracy": best["valid_accuracy"], "valid_macro_f1": best["valid_macro_f1"],
               "valid_loss": best["valid_loss"], "best_epoch": r["best_epoch"], "epochs": r["epochs"],
               "test_accuracy": r["accuracy"], "seconds": round(time.time() - t0, 1),
               "valid_curve": [round(h["valid_accuracy"], 4) for h in hist],
               "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "commit": A.commit()}
        a.results.parent.mkdir(parents=True, exist_ok=True)
        with open(a.results, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"== {v:<14} valid acc {row['valid_accuracy']:.4f} f1 {row['valid_macro_f1']:.4f} "
              f"(epoch {row['best_epoch']}/{row['epochs']})  test {row['test_accuracy']:.4f}  {row['seconds']:.0f}s",
              flush=True)


if __name__ == "__main__":
    main()
