#!/usr/bin/env python
"""Memory and speed of one job under three allocators: why `ulmfit` keeps jemalloc's pages, and why the
SetFit baseline must not.

The heavy `ulmfit` commands re-execute themselves under jemalloc with ``dirty_decay_ms:-1,
muzzy_decay_ms:-1`` (freed pages are kept for reuse, never returned to the OS; ``ulmfit.cli``).
This script runs one job in a fresh process per allocator setting, side by side, and samples the
resident memory (RSS) of the job's whole process tree every ``--every`` seconds:

- ``keep``: jemalloc, pages kept (what `ulmfit` and ``bench/accuracy.py`` use);
- ``decay``: jemalloc with its own default decay (``dirty_decay_ms:10000,muzzy_decay_ms:0``);
- ``glibc``: the system malloc.

Jobs (Rotten Tomatoes from the dataset cache, ``ulmfit data get rotten-tomatoes`` first):

- ``finetune-lm``: ``ulmfit finetune-lm`` on the training text, 1 frozen + 2 epochs, seed 0;
- ``train-classifier``: ``ulmfit train-classifier`` on all training labels, stages 1 1 1 2, seed 0,
  from ``--lm`` (default: the benchmark's fine-tuned forward LM, else the shipped model);
- ``setfit:N``: SetFit training on N labels (seed 0; no test predictions), in the process itself
  (``bench/baselines.py:setfit_here``; needs the baseline packages);
- ``pretrain:M``: ``ulmfit pretrain`` of the default (small) model from random weights for M minutes of
  training on the 20 Newsgroups training posts (3.05M tokens; ``ulmfit data get 20newsgroups`` first),
  seed 0, validation every 500 steps: a long run, to see whether the kept pages keep growing.

For the `ulmfit` jobs the table also gives the wall time of the first epochs from the run's
metrics.jsonl, so a job disturbed late is still compared on the part that ran alone. Rows go to
``bench/results/allocator_memory.jsonl``. Run it alone on the machine (timings).

Usage::

    .venv/bin/python bench/allocator_memory.py --jobs finetune-lm train-classifier --allocators keep decay
    .venv/bin/python bench/allocator_memory.py --jobs setfit:200 --allocators keep glibc decay
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
from ulmfit.cli import JEMALLOC_CONF, allocator_env  # noqa: E402
from ulmfit.io import UlmfitError, cache_root  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "allocator_memory.jsonl"
CACHE = cache_root()  # $ULMFIT_CACHE or ~/.cache/ulmfit, as the library's
# the accuracy benchmark's fine-tuned LM, where bench/accuracy.py keeps it (ULMFIT_BENCH_DIR, as there)
BENCH_LM = Path(os.environ.get("ULMFIT_BENCH_DIR") or CACHE / "bench" / "accuracy").expanduser() / "rotten-tomatoes" \
    / "lm-all-fwd"
CONFS = {"keep": JEMALLOC_CONF, "decay": "dirty_decay_ms:10000,muzzy_decay_ms:0", "glibc": None}


def env_for(allocator: str) -> dict:
    try:
        return allocator_env(CONFS[allocator])
    except UlmfitError as e:
        raise SystemExit(str(e)) from None


def tree_rss_mb(pid: int) -> float:
    """Resident memory of pid and all its descendants, in MB."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            for t in Path(f"/proc/{p}/task").iterdir():
                kids = (t / "children").read_text().split()
                todo.extend(int(k) for k in kids)
        except (OSError, ValueError):
            continue
    return total / 1024


def job_command(job: str, out: Path, lm: Path | None) -> list[str]:
    name = "20newsgroups" if job.startswith("pretrain:") else "rotten-tomatoes"
    data = CACHE / "datasets" / name / "train.csv"
    if not data.exists():
        raise SystemExit(f"{data} missing: run `ulmfit data get {name}` first")
    ulmfit = [sys.executable, "-m", "ulmfit"]
    if job.startswith("pretrain:"):
        minutes = float(job.split(":", 1)[1])
        # --max-vocab 30000: the tokenisation the accuracy benchmark cached for this text is reused
        return ulmfit + ["pretrain", str(data), "--out", str(out), "--max-vocab", "30000", "--epochs", "100",
                         "--max-minutes", str(minutes), "--eval-every", "500", "--seed", "0", "--quiet"]
    if job == "finetune-lm":
        return ulmfit + ["finetune-lm", str(data), "--out", str(out), "--freeze-epochs", "1", "--epochs", "2",
                         "--seed", "0", "--quiet"]
    if job == "train-classifier":
        cmd = ulmfit + ["train-classifier", str(data), "--out", str(out), "--stage-epochs", "1", "1", "1", "2",
                        "--seed", "0", "--quiet"]
        if lm is not None:
            cmd += ["--lm", str(lm)]
        return cmd
    if job.startswith("setfit:"):
        n = int(job.split(":", 1)[1])
        code = ("import csv, random, sys; sys.path.insert(0, %r); from baselines import setfit_here; "
                "rows = list(csv.DictReader(open(%r, encoding='utf-8'))); random.Random(0).shuffle(rows); "
                "rows = rows[:%d]; setfit_here([r['text'] for r in rows], [r['label'] for r in rows], [], 0)"
                % (str(ROOT / "bench"), str(data), n))
        return [sys.executable, "-c", code]
    raise SystemExit(f"unknown job {job!r}")


def epoch_times(out: Path) -> list[float]:
    """Elapsed seconds at the end of each epoch, from the run's metrics.jsonl."""
    path = out / "metrics.jsonl"
    if not path.exists():
        return []
    times = []
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if "elapsed_s" in row and any(k.startswith("valid_") for k in row):
            times.append(round(row["elapsed_s"], 1))
    return times


def run_one(job: str, allocator: str, every: float, lm: Path | None) -> dict:
    with tempfile.TemporaryDirectory(prefix="allocmem-") as tmp:
        out = Path(tmp) / "run"
        cmd = job_command(job, out, lm)
        t0 = time.time()
        proc = subprocess.Popen(cmd, env=env_for(allocator), cwd=ROOT, stdout=subprocess.DEVNULL)
        samples = []
        while proc.poll() is None:
            samples.append((round(time.time() - t0, 1), round(tree_rss_mb(proc.pid))))
            time.sleep(every)
        wall = time.time() - t0
        epochs = epoch_times(out)
    from ulmfit.train.precision import cpu_model  # here: importing it loads torch
    rss = [m for _, m in samples if m > 0]
    return {"job": job, "allocator": allocator, "malloc_conf": CONFS[allocator], "rc": proc.returncode,
            "wall_s": round(wall, 1), "peak_rss_mb": max(rss, default=None),
            "rss_mb_at": samples, "epoch_end_s": epochs,
            "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "cpu": cpu_model(), "command": " ".join(cmd[:4]) + (" ..." if len(cmd) > 4 else "")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", nargs="+", default=["finetune-lm", "train-classifier"])
    ap.add_argument("--allocators", nargs="+", default=["keep", "decay"], choices=sorted(CONFS))
    ap.add_argument("--every", type=float, default=5.0, help="seconds between RSS samples (default 5)")
    ap.add_argument("--lm", type=Path, default=None,
                    help=f"LM for train-classifier (default: {BENCH_LM} if present, else the shipped model)")
    ap.add_argument("--results", type=Path, default=RESULTS)
    a = ap.parse_args(argv)
    lm = a.lm or (BENCH_LM if (BENCH_LM / "model.safetensors").exists() else None)
    print("| job | allocator | exit | wall s | peak RSS MB | RSS at 25/50/75/100% of the run, MB | epoch ends, s |")
    print("|---|---|---:|---:|---:|---|---|")
    for job in a.jobs:
        for alloc in a.allocators:
            row = run_one(job, alloc, a.every, lm)
            a.results.parent.mkdir(parents=True, exist_ok=True)
            with a.results.open("a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
            s = [m for _, m in row["rss_mb_at"]]
            quart = " / ".join(str(s[min(len(s) - 1, int(q * len(s)))]) for q in (0.25, 0.5, 0.75, 1.0)) if s else "-"
            print(f"| {job} | {alloc} | {row['rc']} | {row['wall_s']:.0f} | {row['peak_rss_mb']} | {quart} | "
                  f"{', '.join(str(t) for t in row['epoch_end_s']) or '-'} |", flush=True)
    print(f"\ncommand: .venv/bin/python bench/allocator_memory.py --jobs {' '.join(a.jobs)} "
          f"--allocators {' '.join(a.allocators)} --every {a.every:g}" + (f" --lm {a.lm}" if a.lm else "")
          + (f" --results {a.results}" if a.results != RESULTS else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
