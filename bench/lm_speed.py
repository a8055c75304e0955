#!/usr/bin/env python
"""Language-model training speed on a CPU: AWD-LSTM (all regularisation on) vs a plain LSTM LM.

Goal (from the issue): the AWD-LSTM language model, trained with all of its regularisation
(embedding dropout, locked input/hidden/output dropout, weight drop on the recurrent matrices,
AR/TAR, the chunked linear cross-entropy), trains at >= 0.9x the tokens/s of a plain LSTM LM of
the same shapes, and reaches >= 50% of the matmul-bound limit (measured matmul GFLOP/s divided by
the matmul FLOPs per training token). jemalloc vs glibc malloc is shown before/after.

What one row measures, in a fresh worker process (so the allocator is chosen at process start
and the peak RSS belongs to that row alone):

- ``awd``: ``AWDLSTMLanguageModel(preset(name, vocab))`` trained through
  ``model.loss(x, y, 2.0, 1.0)`` under the trainer's autocast context, then
  ``zero_grad(set_to_none=True)``, ``backward``, ``clip_grad_norm_(params, 0.3)`` and an AdamW
  step with the trainer's parameter groups (discriminative rates, betas (0.8, 0.99), wd 0.01,
  foreach) -- the body of one ``LMTrainer.fit`` step.
- ``plain``: nn.Embedding -> 3 stacked nn.LSTM (emb->hidden, hidden->hidden, hidden->emb) ->
  nn.Linear tied to the embedding -> F.cross_entropy on the full logits; no dropout, no AR/TAR;
  the same optimizer, clipping and hidden-state carrying.

Every step is timed on its own after the warm-up steps; the table gives the median and the
min-max. Inference is eval mode + no_grad, forward + loss on the same batch shape.

On a shared 2-core machine another process holding one core makes a 2-thread step up to ~30x
slower (OpenMP threads wait on each other), so every row records the share of the CPU other
processes used while it was timed; a disturbed row is abandoned and measured again once the
machine is quiet (--retries, --wait-quiet, --max-foreign), and the table shows what was left.

Usage::

    .venv/bin/python bench/lm_speed.py                      # the full default grid (~17 min on 2 quiet cores)
    .venv/bin/python bench/lm_speed.py --quick              # smoke run, < 1 min
    .venv/bin/python bench/lm_speed.py --configs small --precisions bf16 --allocators jemalloc
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

from ulmfit.cli import JEMALLOC_CONF, allocator_env  # jemalloc with pages kept, as the `ulmfit` command runs
from ulmfit.io import UlmfitError

PRESET_SIZES = {  # mirrors ulmfit.model.awd_lstm.PRESETS; checked against it in the worker
    "paper": (400, 1152, 3),
    "small": (256, 768, 3),
    "tiny": (32, 64, 2),
}


# ----------------------------------------------------------------------------------------------
# arithmetic
# ----------------------------------------------------------------------------------------------
def layer_sizes(emb: int, hidden: int, n_layers: int) -> list[tuple[int, int]]:
    sizes = [emb] + [hidden] * (n_layers - 1) + [emb]
    return [(sizes[i], sizes[i + 1]) for i in range(n_layers)]


def flops_per_token(config: str, vocab: int) -> dict:
    """Matmul FLOPs per token: LSTM 2*4*h*(in+h) per layer, decoder 2*emb*vocab; training = 3x forward."""
    emb, hidden, n = PRESET_SIZES[config]
    lstm = sum(2 * 4 * h * (i + h) for i, h in layer_sizes(emb, hidden, n))
    dec = 2 * emb * vocab
    return {"lstm_fwd": lstm, "decoder_fwd": dec, "fwd": lstm + dec, "train": 3 * (lstm + dec)}


# ----------------------------------------------------------------------------------------------
# worker side (runs inside a fresh process)
# ----------------------------------------------------------------------------------------------
def _loaded_allocator() -> str:
    try:
        with open("/proc/self/maps") as f:
            maps = f.read()
    except OSError:
        return "unknown"
    return "jemalloc" if "libjemalloc" in maps else "glibc"


def _cpu_busy_s() -> float:
    """Seconds of CPU time all processes on the machine have used (user+nice+system+irq+softirq+steal)."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
    except OSError:
        return float("nan")
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / os.sysconf("SC_CLK_TCK")


class Contention:
    """How much of the machine's CPU other processes used while a window was timed (0 = none)."""

    def __init__(self):
        self.busy0, self.own0, self.wall0 = _cpu_busy_s(), sum(os.times()[:2]), time.perf_counter()

    def foreign_share(self) -> float:
        busy = _cpu_busy_s() - self.busy0
        own = sum(os.times()[:2]) - self.own0
        wall = time.perf_counter() - self.wall0
        return max(0.0, (busy - own) / (wall * (os.cpu_count() or 1)))


class Contended(RuntimeError):
    pass


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux


def _build_plain(torch, nn, F, emb: int, hidden: int, n_layers: int, vocab: int):
    class PlainLSTMLM(nn.Module):
        """Embedding -> stacked nn.LSTM -> tied linear decoder, no regularisation."""

        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(vocab, emb)
            nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
            self.rnns = nn.ModuleList(nn.LSTM(i, h, batch_first=True) for i, h in layer_sizes(emb, hidden, n_layers))
            self.decoder = nn.Linear(emb, vocab)
            nn.init.zeros_(self.decoder.bias)
            self.decoder.weight = self.embedding.weight
            self.state = None

        def reset(self):
            self.state = None

        def forward(self, ids):
            x = self.embedding(ids)
            state = self.state or [None] * len(self.rnns)
            new = []
            for rnn, s in zip(self.rnns, state):
                x, s2 = rnn(x, s)
                new.append(s2)
            self.state = [(h.detach().float(), c.detach().float()) for h, c in new]
            return self.decoder(x)

        def loss(self, ids, targets, ar_alpha=0.0, tar_beta=0.0):
            logits = self(ids)
            ce = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))
            return ce, ce.detach(), None

    return PlainLSTMLM()


def run_model_worker(a: dict) -> dict:
    import torch
    import torch.nn.functional as F
    from torch import nn

    from ulmfit.model.awd_lstm import PRESETS, preset
    from ulmfit.model.heads import AWDLSTMLanguageModel
    from ulmfit.train.finetune import lm_layer_groups, param_groups
    from ulmfit.train.loop import autocast_ctx

    torch.manual_seed(a["seed"])
    config, vocab, bs, bptt = a["config"], a["vocab"], a["bs"], a["bptt"]
    emb, hidden, n_layers = PRESET_SIZES[config]
    p = PRESETS[config]
    assert (p["emb_size"], p["hidden_size"], p["n_layers"]) == (emb, hidden, n_layers), "preset sizes changed"
    bf16 = a["precision"] == "bf16"
    cpu = torch.device("cpu")

    if a["model"] == "awd":
        model = AWDLSTMLanguageModel(preset(config, vocab))
        groups = lm_layer_groups(model)
        opt_groups = param_groups(groups, 4e-3, 0.01, 2.6)
        params = [q for g in groups for q in g]
    else:
        model = _build_plain(torch, nn, F, emb, hidden, n_layers, vocab)
        params = list(model.parameters())
        opt_groups = [{"params": params, "lr": 4e-3, "weight_decay": 0.01}]
    opt = torch.optim.AdamW(opt_groups, lr=4e-3, betas=(0.8, 0.99), foreach=True)
    n_params = sum(q.numel() for q in params)

    # random token streams: a few distinct batches, cycled (targets are the next tokens)
    n_batches = 4
    if a["tokens"] == "zipf":
        w = 1.0 / torch.arange(1, vocab + 1, dtype=torch.float64)
        data = torch.multinomial(w / w.sum(), n_batches * bs * (bptt + 1), replacement=True)
    else:
        data = torch.randint(0, vocab, (n_batches * bs * (bptt + 1),))
    data = data.view(n_batches, bs, bptt + 1)
    batches = [(d[:, :-1].contiguous(), d[:, 1:].contiguous()) for d in data]

    def train_step(i):
        x, y = batches[i % n_batches]
        with autocast_ctx(bf16, cpu):
            loss, ce, _ = model.loss(x, y, 2.0, 1.0)
        if not torch.isfinite(loss):
            raise RuntimeError("non-finite loss")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 0.3)
        opt.step()
        return float(ce)

    def infer_step(i):
        x, y = batches[i % n_batches]
        with torch.no_grad(), autocast_ctx(bf16, cpu):
            _, ce, _ = model.loss(x, y, 2.0, 1.0)
        return float(ce)

    tok = bs * bptt
    model.train()
    model.reset()
    first_step_s = None
    train_times = []
    for i in range(a["warmup"] + a["steps"]):
        if i == a["warmup"]:
            cont = Contention()
        step_cont = Contention()
        t0 = time.perf_counter()
        ce = train_step(i)
        dt = time.perf_counter() - t0
        if a.get("abort_foreign") and step_cont.foreign_share() > a["abort_foreign"]:
            # another process holds a core: with 2 OpenMP threads a step can get ~30x slower, so
            # give up now and let the driver measure this row again once the machine is quiet
            raise Contended(f"other processes used {100 * step_cont.foreign_share():.0f}% of the CPU in step {i}")
        if i == 0:
            first_step_s = dt
        if i >= a["warmup"]:
            train_times.append(dt)
    foreign = cont.foreign_share()
    rss_train = _peak_rss_mb()

    model.eval()
    model.reset()
    infer_times = []
    for i in range(a["infer_warmup"] + a["infer_steps"]):
        t0 = time.perf_counter()
        infer_step(i)
        dt = time.perf_counter() - t0
        if i >= a["infer_warmup"]:
            infer_times.append(dt)

    if a.get("profile"):
        from torch.profiler import ProfilerActivity, profile

        with open(a["profile"], "w") as f:
            for what, fn, mode in (("training step", train_step, True), ("inference step", infer_step, False)):
                model.train(mode)
                with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
                    fn(0)
                avg = prof.key_averages()
                f.write(f"### one {what}\n\n")
                f.write(avg.table(sort_by="self_cpu_time_total", row_limit=30) + "\n\n")
                f.write(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total",
                                                                           row_limit=30) + "\n\n")

    def q(xs, frac):
        xs = sorted(xs)
        k = (len(xs) - 1) * frac
        lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
        return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)

    return {
        "train_step_s": train_times,
        "train_tok_s_median": tok / statistics.median(train_times),
        "train_tok_s_min": tok / max(train_times),
        "train_tok_s_max": tok / min(train_times),
        "train_tok_s_q1": tok / q(train_times, 0.75),
        "train_tok_s_q3": tok / q(train_times, 0.25),
        "first_step_s": first_step_s,
        "foreign_cpu_share": foreign,
        "infer_step_s": infer_times,
        "infer_tok_s_median": tok / statistics.median(infer_times),
        "peak_rss_train_mb": rss_train,
        "peak_rss_mb": _peak_rss_mb(),
        "last_train_ce": ce,
        "n_params": n_params,
        "threads": torch.get_num_threads(),
        "allocator_loaded": _loaded_allocator(),
        "ld_preload": os.environ.get("LD_PRELOAD", ""),
        "malloc_conf": os.environ.get("MALLOC_CONF", ""),
    }


def run_matmul_worker(a: dict) -> dict:
    """GFLOP/s of torch matmuls in fp32 and bf16, on shapes the models use, median of several runs."""
    import torch

    torch.manual_seed(0)
    vocab, bs, bptt, reps = a["vocab"], a["bs"], a["bptt"], a["reps"]
    n = bs * bptt
    emb, hidden = PRESET_SIZES["paper"][:2]
    rows = max(16, (1 << 23) // vocab)  # ulmfit.model.loss's chunk of rows
    shapes = {
        "square": [(a["square"], a["square"], a["square"])],
        f"decoder {n}x{emb}@{emb}x{vocab}, chunked {rows} rows (loss.py fwd)": [
            (min(rows, n - s), emb, vocab) for s in range(0, n, rows)
        ],
        f"decoder {n}x{emb}@{emb}x{vocab}, one matmul": [(n, emb, vocab)],
        f"LSTM input proj {n}x{hidden}@{hidden}x{4 * hidden}": [(n, hidden, 4 * hidden)],
        f"LSTM recurrent {bs}x{hidden}@{hidden}x{4 * hidden}, x{bptt} steps": [(bs, hidden, 4 * hidden)] * bptt,
    }
    out = {}
    cont = Contention()
    for name, mats in shapes.items():
        out[name] = {}
        flops = sum(2 * m * k * nn_ for m, k, nn_ in mats)
        for col, dt in (("fp32", torch.float32), ("fp32_onednn", torch.float32), ("bf16", torch.bfloat16)):
            if col == "bf16" and not a.get("bf16", True):
                # not asked for: on a CPU without native bf16, oneDNN's fallback takes minutes a shape
                out[name][col] = float("nan")
                continue
            if col == "fp32_onednn":  # oneDNN's sgemm (what the LSTM kernel uses); weight as [n, k]
                ops = [(torch.randn(m, k).to_mkldnn(), torch.randn(nn_, k).to_mkldnn()) for m, k, nn_ in mats]
                fn = torch._C._nn.mkldnn_linear
            else:  # torch.mm: MKL sgemm for fp32, oneDNN for bf16
                ops = [(torch.randn(m, k).to(dt), torch.randn(k, nn_).to(dt)) for m, k, nn_ in mats]
                fn = torch.mm
            try:
                for x, y in ops:  # warm-up
                    fn(x, y)
                times = []
                for _ in range(reps):
                    t0 = time.perf_counter()
                    for x, y in ops:
                        fn(x, y)
                    times.append(time.perf_counter() - t0)
                out[name][col] = flops / statistics.median(times) / 1e9
            except Exception:  # oneDNN not built in
                out[name][col] = float("nan")
            del ops
    return {"gflops": out, "threads": torch.get_num_threads(), "allocator_loaded": _loaded_allocator(),
            "foreign_cpu_share": cont.foreign_share()}


def worker_main(spec_json: str) -> None:
    spec = json.loads(spec_json)
    kind = spec["kind"]
    try:
        res = run_model_worker(spec) if kind == "model" else run_matmul_worker(spec)
        res["ok"] = True
    except Contended as e:
        res = {"ok": False, "contended": True, "error": str(e)}
    except Exception as e:  # reported in the table, not fatal to the whole run
        import traceback

        res = {"ok": False, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
    with open(spec["result_path"], "w") as f:
        json.dump(res, f)


# ----------------------------------------------------------------------------------------------
# driver side
# ----------------------------------------------------------------------------------------------
def worker_env(allocator: str) -> dict:
    """The environment for a worker: jemalloc preloaded (with page retention) or definitely not."""
    try:
        return allocator_env(JEMALLOC_CONF if allocator == "jemalloc" else None)
    except UlmfitError as e:
        raise SystemExit(str(e)) from None


def spawn(spec: dict, allocator: str, timeout: float) -> dict:
    fd, path = tempfile.mkstemp(prefix="lm_speed_", suffix=".json")
    os.close(fd)
    spec = {**spec, "result_path": path}
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)]
    t0 = time.time()
    try:
        proc = subprocess.run(cmd, env=worker_env(allocator), timeout=timeout, capture_output=True, text=True)
        with open(path) as f:
            text = f.read()
        res = json.loads(text) if text else {"ok": False, "error": f"worker exited {proc.returncode}: {proc.stderr[-2000:]}"}
    except subprocess.TimeoutExpired:
        res = {"ok": False, "error": f"timed out after {timeout:.0f}s"}
    finally:
        os.unlink(path)
    res["wall_s"] = time.time() - t0
    if res.get("ok") and spec["kind"] == "model" and res["allocator_loaded"] != allocator:
        res["ok"] = False
        res["error"] = f"asked for {allocator}, worker has {res['allocator_loaded']} loaded"
    return res


def wait_quiet(max_wait: float, threshold: float) -> float:
    """Wait (up to max_wait s) until other processes use less than `threshold` of the machine's CPU
    over one second; returns the seconds waited."""
    t0 = time.time()
    while time.time() - t0 < max_wait:
        b0 = _cpu_busy_s()
        time.sleep(1.0)
        if (_cpu_busy_s() - b0) / (os.cpu_count() or 1) < threshold:
            break
    return time.time() - t0


def git_revision() -> str:
    """The commit measured, marked dirty when the package's sources differ from it (read-only git)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=root, capture_output=True,
                               text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (rev or "unknown") + (" (src/ modified)" if dirty else "")


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def fmt_int(x: float) -> str:
    return f"{x:,.0f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", default="paper,small")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--allocators", default="glibc,jemalloc")
    ap.add_argument("--models", default="awd,plain")
    ap.add_argument("--steps", type=int, default=None, help="timed training steps per row (default 8)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed training steps first (default 2)")
    ap.add_argument("--infer-steps", type=int, default=None, help="timed inference steps (default 3)")
    ap.add_argument("--vocab", type=int, default=None, help="vocabulary size (default 60000)")
    ap.add_argument("--bs", type=int, default=None, help="batch size (default 64)")
    ap.add_argument("--bptt", type=int, default=None, help="sequence length (default 70)")
    ap.add_argument("--tokens", choices=["uniform", "zipf"], default="uniform")
    ap.add_argument("--quick", action="store_true", help="tiny vocab/batch/steps: a smoke run in < 1 min")
    ap.add_argument("--json", help="also write all results to this JSON file")
    ap.add_argument("--profile", help="profile one training step of each row into PREFIX_<row>.txt")
    ap.add_argument("--timeout", type=float, default=1200.0, help="seconds per worker")
    ap.add_argument("--retries", type=int, default=None,
                    help="re-run a row up to N times when other processes used the CPU while it was timed "
                         "(default 4; 0 with --quick)")
    ap.add_argument("--wait-quiet", type=float, default=None,
                    help="before each row, wait up to S seconds for other processes to leave the CPU "
                         "(default 120; 0 with --quick)")
    ap.add_argument("--max-foreign", type=float, default=0.05,
                    help="share of the machine's CPU other processes may use during a row before it is re-run")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        worker_main(a.worker)
        return 0

    q = a.quick
    if a.retries is None:
        a.retries = 0 if q else 4
    if a.wait_quiet is None:
        a.wait_quiet = 0.0 if q else 120.0
    vocab = a.vocab or (2000 if q else 60000)
    bs = a.bs or (8 if q else 64)
    bptt = a.bptt or (20 if q else 70)
    steps = a.steps or (2 if q else 8)
    warmup = a.warmup if a.warmup is not None else (1 if q else 2)
    infer_steps = a.infer_steps or (1 if q else 3)
    configs = [c for c in a.configs.split(",") if c]
    precisions = [p for p in a.precisions.split(",") if p]
    allocators = [x for x in a.allocators.split(",") if x]
    models = [m for m in a.models.split(",") if m]
    for c in configs:
        if c not in PRESET_SIZES:
            ap.error(f"unknown config {c}")
    if set(precisions) - {"fp32", "bf16"} or set(allocators) - {"glibc", "jemalloc"} or set(models) - {"awd", "plain"}:
        ap.error("bad --precisions/--allocators/--models")

    command = shlex.join([os.path.relpath(sys.executable), os.path.relpath(os.path.abspath(__file__)), *(sys.argv[1:] if argv is None else argv)])
    started = _dt.datetime.now().astimezone()
    load_before = os.getloadavg()
    import torch

    print("# LM training speed: AWD-LSTM vs plain LSTM LM", flush=True)
    print(f"- command: `{command}`")
    print(f"- date: {started:%Y-%m-%d %H:%M %Z}; code: commit {git_revision()}")
    print(f"- CPU: {cpu_model()} ({os.cpu_count()} logical CPUs), torch {torch.__version__}, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}, threads {torch.get_num_threads()}")
    print(f"- shapes: vocab {vocab:,}, bs {bs}, bptt {bptt} (fixed), {bs * bptt:,} tokens/step, tokens {a.tokens}; "
          f"{warmup} warm-up + {steps} timed training steps, {infer_steps} timed inference steps per row", flush=True)

    # matmul throughput (glibc worker; single-op matmuls barely touch the allocator)
    mm = None
    for attempt in range(a.retries + 1):
        wait_quiet(a.wait_quiet, a.max_foreign)
        r = spawn({"kind": "matmul", "vocab": vocab, "bs": bs, "bptt": bptt, "reps": 3 if q else 5,
                   "square": 512 if q else 2048, "bf16": "bf16" in precisions}, "glibc", a.timeout)
        if mm is None or (r.get("ok") and (not mm.get("ok") or r["foreign_cpu_share"] < mm["foreign_cpu_share"])):
            mm = r
        if not r.get("ok") or r["foreign_cpu_share"] <= a.max_foreign:
            break
        print(f"  matmul benchmark: other processes used {100 * r['foreign_cpu_share']:.0f}% of the CPU, "
              "measuring again", file=sys.stderr, flush=True)
    if not mm.get("ok"):
        print(f"matmul benchmark failed: {mm.get('error')}", file=sys.stderr)
        return 1
    sq = mm["gflops"]["square"]
    # the machine's matmul peak: the best square-matmul rate this torch build reaches at each precision
    peak = {"fp32": max(v for v in (sq["fp32"], sq["fp32_onednn"]) if v == v), "bf16": sq["bf16"]}

    results = []
    jobs = [(c, p, al, m) for c in configs for p in precisions for al in allocators for m in models]
    for i, (c, p, al, m) in enumerate(jobs):
        spec = {"kind": "model", "config": c, "precision": p, "model": m, "vocab": vocab, "bs": bs, "bptt": bptt,
                "steps": steps, "warmup": warmup, "infer_steps": infer_steps, "infer_warmup": 1, "seed": 0,
                "tokens": a.tokens}
        if a.profile:
            spec["profile"] = f"{a.profile}_{c}_{p}_{al}_{m}.txt"
        r = None
        for attempt in range(a.retries + 1):
            wait_quiet(a.wait_quiet, a.max_foreign)
            last = attempt == a.retries
            # abort a step disturbed by another process, except on the last attempt (then report it)
            r2 = spawn({**spec, "abort_foreign": None if last else 0.25}, al, a.timeout)
            if r2.get("ok") and (r is None or not r.get("ok") or r2["foreign_cpu_share"] < r["foreign_cpu_share"]):
                r = r2
            elif r is None or (not r.get("ok") and not r2.get("contended")):
                r = r2
            if r.get("ok") and r["foreign_cpu_share"] <= a.max_foreign:
                break
            if not r.get("ok") and not r2.get("contended"):
                break  # a real failure: retrying will not help
            why = r2["error"] if r2.get("contended") else f"other processes used {100 * r2['foreign_cpu_share']:.0f}% of the CPU"
            if not last:
                print(f"  [{i + 1}/{len(jobs)}] {c} {p} {al} {m}: {why}, measuring again", file=sys.stderr, flush=True)
        r.update(config=c, precision=p, allocator=al, model=m)
        results.append(r)
        status = (f"train {fmt_int(r['train_tok_s_median'])} tok/s, infer {fmt_int(r['infer_tok_s_median'])} tok/s, "
                  f"RSS {r['peak_rss_mb']:,.0f} MB" if r.get("ok") else f"FAILED: {r.get('error')}")
        print(f"  [{i + 1}/{len(jobs)}] {c} {p} {al} {m}: {status} ({r['wall_s']:.0f}s)", file=sys.stderr, flush=True)

    def find(c, p, al, m):
        for r in results:
            if (r["config"], r["precision"], r["allocator"], r["model"]) == (c, p, al, m) and r.get("ok"):
                return r
        return None

    print("\n## Matmul throughput (median GFLOP/s)\n")
    print("fp32 torch.mm is MKL sgemm (the path of nn.Linear/addmm); fp32 oneDNN is torch._C._nn.mkldnn_linear "
          "(the library under the LSTM kernel); bf16 torch.mm is oneDNN.\n")
    print(f"Other processes used {100 * mm['foreign_cpu_share']:.0f}% of the CPU during this measurement.\n")
    print("| shape | fp32 torch.mm | fp32 oneDNN | bf16 torch.mm |")
    print("|---|---:|---:|---:|")
    for name, v in mm["gflops"].items():
        label = name
        if name == "square":
            s = 512 if q else 2048
            label = f"square {s}x{s}@{s}x{s} (best of a row = the peak used below)"
        print(f"| {label} | {v['fp32']:.0f} | {v['fp32_onednn']:.0f} | {v['bf16']:.0f} |")

    print("\n## Matmul-bound limit\n")
    print("| config | FLOPs/token fwd (LSTM + decoder) | FLOPs/token train (3x) | fp32 limit tok/s | bf16 limit tok/s |")
    print("|---|---:|---:|---:|---:|")
    for c in configs:
        f = flops_per_token(c, vocab)
        print(f"| {c} | {f['lstm_fwd'] / 1e6:.1f}M + {f['decoder_fwd'] / 1e6:.1f}M = {f['fwd'] / 1e6:.1f}M | "
              f"{f['train'] / 1e6:.1f}M | {fmt_int(peak['fp32'] * 1e9 / f['train'])} | "
              f"{fmt_int(peak['bf16'] * 1e9 / f['train'])} |")

    print("\n## Results\n")
    print("train tok/s: median over timed steps [min-max]; limit: matmul-bound tok/s at the square-matmul peak; "
          "AWD/plain: ratio of medians at the same config, precision and allocator; "
          "RSS: peak resident set of the worker (training + inference); other load: share of the machine's CPU "
          "used by other processes while the training steps were timed (rows above "
          f"{100 * a.max_foreign:.0f}% are re-run up to {a.retries} times, the least disturbed run is kept).\n")
    print("| config | precision | allocator | model | train tok/s | [min-max] | % of limit | AWD/plain train "
          "| infer tok/s | AWD/plain infer | first step s | peak RSS MB | other load |")
    print("|---|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        c, p, al, m = r["config"], r["precision"], r["allocator"], r["model"]
        if not r.get("ok"):
            print(f"| {c} | {p} | {al} | {m} | failed: {r.get('error', '')[:80]} |  |  |  |  |  |  |  |  |")
            continue
        limit = peak[p] * 1e9 / flops_per_token(c, vocab)["train"]
        other = find(c, p, al, "plain")
        ratio_t = ratio_i = "-"
        if m == "awd" and other:
            ratio_t = f"{r['train_tok_s_median'] / other['train_tok_s_median']:.2f}"
            ratio_i = f"{r['infer_tok_s_median'] / other['infer_tok_s_median']:.2f}"
        print(f"| {c} | {p} | {al} | {m} | {fmt_int(r['train_tok_s_median'])} | "
              f"[{fmt_int(r['train_tok_s_min'])}-{fmt_int(r['train_tok_s_max'])}] | "
              f"{100 * r['train_tok_s_median'] / limit:.0f}% | {ratio_t} | {fmt_int(r['infer_tok_s_median'])} | "
              f"{ratio_i} | {r['first_step_s']:.2f} | {r['peak_rss_mb']:,.0f} | {100 * r['foreign_cpu_share']:.0f}% |")

    if "glibc" in allocators and "jemalloc" in allocators:
        print("\n## jemalloc vs glibc (train tok/s, median)\n")
        print("| config | precision | model | glibc | jemalloc | speed-up | peak RSS glibc -> jemalloc MB |")
        print("|---|---|---|---:|---:|---:|---|")
        for c in configs:
            for p in precisions:
                for m in models:
                    g, j = find(c, p, "glibc", m), find(c, p, "jemalloc", m)
                    if g and j:
                        print(f"| {c} | {p} | {m} | {fmt_int(g['train_tok_s_median'])} | "
                              f"{fmt_int(j['train_tok_s_median'])} | "
                              f"{j['train_tok_s_median'] / g['train_tok_s_median']:.2f}x | "
                              f"{g['peak_rss_mb']:,.0f} -> {j['peak_rss_mb']:,.0f} |")

    if "awd" in models:
        print("\n## Goals (AWD-LSTM rows)\n")
        print("| config | precision | allocator | AWD/plain >= 0.9 | % of matmul limit >= 50% |")
        print("|---|---|---|---|---|")
        for c in configs:
            for p in precisions:
                for al in allocators:
                    w = find(c, p, al, "awd")
                    if not w:
                        continue
                    pl = find(c, p, al, "plain")
                    ratio = f"{w['train_tok_s_median'] / pl['train_tok_s_median']:.3f} " + (
                        "yes" if w["train_tok_s_median"] >= 0.9 * pl["train_tok_s_median"] else "**no**") if pl else "-"
                    frac = w["train_tok_s_median"] / (peak[p] * 1e9 / flops_per_token(c, vocab)["train"])
                    print(f"| {c} | {p} | {al} | {ratio} | {100 * frac:.1f}% " + ("yes" if frac >= 0.5 else "**no**") + " |")

    load_after = os.getloadavg()
    elapsed = (_dt.datetime.now().astimezone() - started).total_seconds()
    threads = {r.get("threads") for r in results if r.get("ok")}
    print(f"\n- total wall time {elapsed / 60:.1f} min; worker torch threads {sorted(threads)}; "
          f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}")

    if a.json:
        with open(a.json, "w") as f:
            json.dump({"command": command, "date": started.isoformat(), "cpu": cpu_model(), "commit": git_revision(),
                       "torch": torch.__version__, "vocab": vocab, "bs": bs, "bptt": bptt, "steps": steps,
                       "warmup": warmup, "matmul": mm, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
