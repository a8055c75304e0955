"""Did a change slow training down? The demo's two steps, timed at two commits side by side.

Runs, in a fresh process each, LM fine-tuning of the shipped forward model on Rotten Tomatoes (1
frozen + 1 epoch, capped at --lm-tokens tokens) and a classifier on --labels of its texts (head,
then all layers, one epoch each), from the `src/` of each given checkout, alternating A, B, A, B
... so that the machine's drift hits both alike; prints one JSON line per run and the medians.

    git worktree add /tmp/wt-old <commit>
    .venv/bin/python bench/ab_speed.py /tmp/wt-old . --repeats 2
    git worktree remove /tmp/wt-old

Needs the dataset in the cache (`ulmfit data get rotten-tomatoes`) and about 2.5 minutes a run on
2 cores. Run it alone: other work on the machine changes the times.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def one_run(out: str, lm_tokens: int, labels: int) -> dict:
    from ulmfit.api import finetune_lm
    from ulmfit.classifier_api import train_classifier
    from ulmfit.datasets import get as get_dataset
    from ulmfit.pretrained import default_lm
    from ulmfit.train.classify import ClassifierTrainConfig
    from ulmfit.train.loop import LMTrainConfig

    data = str(get_dataset("rotten-tomatoes", progress=False) / "train.csv")
    t = time.time()
    finetune_lm(default_lm(False), data, out + "/lm", fmt="csv", column="text", progress=False, n_workers=1,
                train_cfg=LMTrainConfig(freeze_epochs=1, epochs=1, freeze_lr=1e-2, lr=4e-3, max_tokens=lm_tokens,
                                        save_every_minutes=1e9))
    lm_s = time.time() - t
    t = time.time()
    train_classifier(out + "/lm", data, out + "/clf", max_train=labels, progress=False, n_workers=1,
                     cfg=ClassifierTrainConfig(stage_groups=(1, 0), stage_epochs=(1, 1), stage_lrs=(4e-2, 2e-3),
                                               min_last_steps=0))
    return {"lm_s": round(lm_s, 1), "clf_s": round(time.time() - t, 1)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("a", help="checkout A (a git worktree or the repository), its src/ is imported")
    p.add_argument("b", help="checkout B")
    p.add_argument("--repeats", type=int, default=2, help="runs of each checkout, alternating (default: 2)")
    p.add_argument("--lm-tokens", type=int, default=120_000, help="LM fine-tuning token budget (default: 120000)")
    p.add_argument("--labels", type=int, default=1500, help="classifier training texts (default: 1500)")
    p.add_argument("--worker", nargs=3, metavar=("OUT", "LM_TOKENS", "LABELS"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        print("RESULT " + json.dumps(one_run(a.worker[0], int(a.worker[1]), int(a.worker[2]))), flush=True)
        return 0
    rows = compare(a.a, a.b, a.repeats, lambda src, out: _subprocess_run(src, out, a))
    for key in ("lm_s", "clf_s"):
        ma, mb = (statistics.median(r[key] for r in rows if r["checkout"] == t) for t in ("A", "B"))
        print(f"{key}: median A {ma:.1f} s, B {mb:.1f} s, B/A {mb / ma:.2f}")
    return 0


def compare(a: str, b: str, repeats: int, run) -> list[dict]:
    """Rows of `run(src_dir, out_dir)` for A, B, A, B, ... (`repeats` of each, alternating)."""
    rows = []
    srcs = {}
    for tag, checkout in (("A", a), ("B", b)):
        srcs[tag] = Path(checkout).resolve() / "src"
        if not (srcs[tag] / "ulmfit").is_dir():
            raise SystemExit(f"{checkout} has no src/ulmfit")
    with tempfile.TemporaryDirectory(prefix="ab_speed-") as tmp:
        for i in range(repeats):
            for tag in ("A", "B"):
                out = os.path.join(tmp, f"{tag}{i}")
                row = {"checkout": tag, "path": str(srcs[tag].parent), "run": i, **run(srcs[tag], out)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def _subprocess_run(src: Path, out: str, a) -> dict:
    """One run in a fresh process that imports ulmfit from `src`."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    r = subprocess.run([sys.executable, __file__, a.a, a.b, "--worker", out, str(a.lm_tokens), str(a.labels)],
                       env=env, capture_output=True, text=True)
    line = next((x for x in r.stdout.splitlines() if x.startswith("RESULT ")), None)
    if r.returncode or line is None:
        raise SystemExit(f"the run from {src} failed:\n{r.stderr[-3000:]}")
    return json.loads(line[7:])


if __name__ == "__main__":
    sys.exit(main())
