"""Classifier speed: training documents/s, batched inference documents/s and single-document
latency of the ULMFiT classifier (BPT3C + concat pooling head), for the paper and small presets,
on documents of ~250 tokens, with the peak RSS of each configuration.

Each configuration runs in a fresh subprocess (so peak RSS is its own) with jemalloc preloaded
when installed, as the `ulmfit` command does. Prints a markdown table and the command.

    .venv/bin/python bench/clf_speed.py                 # full run (a few minutes)
    .venv/bin/python bench/clf_speed.py --quick         # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone


def worker(args) -> dict:
    import numpy as np
    import torch
    import torch.nn.functional as F

    from ulmfit.model.awd_lstm import preset
    from ulmfit.model.classifier import CLASSIFIER_DROPOUTS, AWDLSTMClassifier, HeadConfig
    from ulmfit.train.finetune import freeze_to
    from ulmfit.train.loop import autocast_ctx

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    arch = preset(args.config, args.vocab, **CLASSIFIER_DROPOUTS, drop_mult=0.5)
    model = AWDLSTMClassifier(arch, HeadConfig(n_classes=2))
    groups = model.layer_groups()
    freeze_to(groups, 0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.7, 0.99))
    bf16 = args.precision == "bf16"

    def make_batch(bs):
        lens = np.clip(rng.normal(args.doc_len, args.doc_len * 0.15, bs).astype(int), 20, None)
        T = int(lens.max())
        ids = torch.ones(bs, T, dtype=torch.long)
        for i, L in enumerate(lens):
            ids[i, :L] = torch.from_numpy(rng.integers(9, args.vocab, L))
        return ids, torch.from_numpy(lens), torch.from_numpy(rng.integers(0, 2, bs))

    # training
    model.train()
    times = []
    for step in range(args.warmup + args.steps):
        ids, lens, y = make_batch(args.bs)
        t = time.perf_counter()
        with autocast_ctx(bf16, torch.device("cpu")):
            logits = model(ids, lens)
        loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 25.0)
        opt.step()
        if step >= args.warmup:
            times.append(time.perf_counter() - t)
    train_dps = args.bs / statistics.median(times)
    # batched inference
    model.eval()
    inf = []
    with torch.no_grad():
        for step in range(args.warmup + args.steps):
            ids, lens, _ = make_batch(args.bs)
            t = time.perf_counter()
            with autocast_ctx(bf16, torch.device("cpu")):
                model(ids, lens)
            if step >= args.warmup:
                inf.append(time.perf_counter() - t)
        lat = []
        for step in range(args.warmup + args.latency_docs):
            ids, lens, _ = make_batch(1)
            t = time.perf_counter()
            with autocast_ctx(bf16, torch.device("cpu")):
                model(ids, lens)
            if step >= args.warmup:
                lat.append(time.perf_counter() - t)
    return {
        "train_docs_s": train_dps,
        "train_docs_s_min": args.bs / max(times), "train_docs_s_max": args.bs / min(times),
        "infer_docs_s": args.bs / statistics.median(inf),
        "latency_ms": 1000 * statistics.median(lat),
        "latency_ms_p90": 1000 * sorted(lat)[int(0.9 * (len(lat) - 1))],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "params": sum(p.numel() for p in model.parameters()),
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", default="small,paper")
    p.add_argument("--precisions", default="bf16,fp32")
    p.add_argument("--vocab", type=int, default=30000)
    p.add_argument("--bs", type=int, default=32)
    p.add_argument("--doc-len", type=int, default=250)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--latency-docs", type=int, default=20)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", default=None)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        wargs = argparse.Namespace(**json.loads(a.worker))
        print(json.dumps(worker(wargs)))
        return
    if a.quick:
        a.configs, a.precisions, a.steps, a.warmup, a.latency_docs, a.bs = "small", "bf16", 2, 1, 3, 8
    from ulmfit.cli import JEMALLOC_CONF, allocator_env, find_jemalloc

    lib = find_jemalloc()
    env = allocator_env(JEMALLOC_CONF) if lib else dict(os.environ)
    rows = []
    t0 = time.time()
    for config in a.configs.split(","):
        for precision in a.precisions.split(","):
            wargs = dict(config=config, precision=precision, vocab=a.vocab, bs=a.bs, doc_len=a.doc_len,
                         steps=a.steps, warmup=a.warmup, latency_docs=a.latency_docs)
            r = subprocess.run([sys.executable, __file__, "--worker", json.dumps(wargs)], env=env,
                               capture_output=True, text=True)
            if r.returncode != 0:
                raise SystemExit(r.stderr[-3000:])
            res = json.loads(r.stdout.strip().splitlines()[-1])
            rows.append({**wargs, **res})
            print(f"  {config} {precision}: train {res['train_docs_s']:.1f} docs/s, infer {res['infer_docs_s']:.1f} "
                  f"docs/s, latency {res['latency_ms']:.0f} ms", file=sys.stderr)
    cmd = " ".join(["python", "bench/clf_speed.py", *sys.argv[1:]])
    print("## Classifier speed (bench/clf_speed.py)\n")
    print(f"- command: `{cmd}`")
    print(f"- date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; CPU: {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} logical CPUs; torch threads {rows[0]['threads']}; allocator: "
          f"{'jemalloc' if lib else 'glibc'}")
    print(f"- documents of ~{a.doc_len} tokens (normal, sd 15%), vocab {a.vocab:,}, batch {a.bs}, BPT3C bptt 70, "
          f"all layers trainable; medians of {a.steps} timed steps after {a.warmup} warm-up; latency: median (p90) "
          f"of {a.latency_docs} single documents; total {time.time() - t0:.0f} s\n")
    print("| config | precision | params | train docs/s [min-max] | inference docs/s (batched) | latency ms (p90) | peak RSS MB |")
    print("|---|---|---:|---|---:|---|---:|")
    for r in rows:
        print(f"| {r['config']} | {r['precision']} | {r['params'] / 1e6:.1f}M | {r['train_docs_s']:.1f} "
              f"[{r['train_docs_s_min']:.1f}-{r['train_docs_s_max']:.1f}] | {r['infer_docs_s']:.1f} | "
              f"{r['latency_ms']:.0f} ({r['latency_ms_p90']:.0f}) | {r['peak_rss_mb']:.0f} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
