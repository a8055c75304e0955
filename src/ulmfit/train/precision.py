"""Whether to train and predict with bf16 autocast on this CPU: measured, not assumed.

bf16 halves the memory traffic of the LSTM and decoder matmuls, and on CPUs whose matrix units
run bf16 natively (AMX, or AVX-512 bf16 as on AMD Zen 4/5) it is 2-4x the fp32 matmul rate. But a
CPU that reports AVX-512 is not always one of them: on a 2-core Intel Xeon with avx512_bf16 and no
AMX, bf16 matmuls ran at 0.54-0.70x the fp32 rate and a training step of the shipped model at
0.61x (BENCHMARKS.md, "Precision"). So the first use on a machine times one matmul of the LSTM's
shape in both precisions and turns bf16 on only when it is clearly faster. The answer is kept in
the ulmfit cache per CPU model, matrix-unit flags, torch version and thread count, so every later
run on the same machine makes the same choice (and gives the same numbers). The flags are part of
the key because virtual machines report generic model names: two 2-core guests that both call
themselves "Intel(R) Xeon(R) Processor" measured 0.54x (no AMX) and 6.2x (AMX).

`ULMFIT_BF16=on|off|auto` overrides the measurement (`on` still needs a CPU that can run bf16);
the training commands' `--no-bf16` turns it off for one run.
"""

from __future__ import annotations

import json
import os
import platform
import time
from functools import lru_cache
from pathlib import Path

import torch

from ..io import OFF_WORDS, ON_WORDS, UlmfitError, atomic_write_text, cache_root

MIN_SPEEDUP = 1.25  # bf16 must beat fp32 by this much: the choice should not flip on noise
PROBE_FILE = "bf16-probe.json"


def bf16_supported() -> bool:
    """The CPU can run bf16 autocast at all (natively or through oneDNN's AVX-512 paths)."""
    try:
        return bool(torch.backends.cpu.get_cpu_capability() in ("AVX512", "AMX")
                    or torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:
        return False


def cpu_model() -> str:
    """The CPU's model name as the kernel reports it (a virtual machine's may be generic)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# CPU flags that decide how fast bf16 matmuls run (AMX tiles, AVX-512 bf16/fp16 instructions)
MATRIX_FLAGS = ("amx_bf16", "amx_tile", "avx512_bf16", "avx512_fp16", "avx512f")


def cpu_flags(cpuinfo: str | None = None) -> list[str]:
    """The MATRIX_FLAGS this CPU reports (from /proc/cpuinfo; empty where there is none)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return []
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            have = set(line.split(":", 1)[1].split())
            return [f for f in MATRIX_FLAGS if f in have]
    return []


def machine_key() -> str:
    flags = " ".join(cpu_flags()) or "-"
    return (f"{cpu_model()} [{flags}] | {platform.machine()} | torch {torch.__version__} | "
            f"{torch.get_num_threads()} threads")


def measure_bf16_speedup(rows: int = 2240, inner: int = 768, cols: int = 3072, reps: int = 3) -> float:
    """fp32 time / bf16 time of one matmul of the small model's LSTM input projection (bs 32 x bptt
    70 rows), best of `reps` for each, the two precisions interleaved so that a burst of load from
    another process hits both. About 0.1-0.5 s."""
    g = torch.Generator().manual_seed(0)
    a32 = torch.randn(rows, inner, generator=g)
    b32 = torch.randn(inner, cols, generator=g)
    a16, b16 = a32.bfloat16(), b32.bfloat16()
    best = {torch.float32: float("inf"), torch.bfloat16: float("inf")}
    for i in range(reps + 1):
        for (a, b) in ((a32, b32), (a16, b16)):
            t = time.perf_counter()
            torch.mm(a, b)
            dt = time.perf_counter() - t
            if i:  # the first round builds oneDNN's kernels
                best[a.dtype] = min(best[a.dtype], dt)
    return best[torch.float32] / max(best[torch.bfloat16], 1e-9)


def _probe_path() -> Path:
    return cache_root() / PROBE_FILE


def bf16_speedup() -> float:
    """The measured speed-up of bf16 over fp32 on this machine, from the cache when it has one."""
    path, key = _probe_path(), machine_key()
    try:
        known = json.loads(path.read_text())
        if not isinstance(known, dict):
            known = {}
    except (OSError, ValueError):
        known = {}
    entry = known.get(key)
    if isinstance(entry, dict) and isinstance(entry.get("speedup"), (int, float)):
        return float(entry["speedup"])
    speedup = float(measure_bf16_speedup())
    known[key] = {"speedup": round(speedup, 3), "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(known, indent=1, sort_keys=True) + "\n")
    except OSError:
        pass  # a read-only cache: measure again next time
    return speedup


def _setting() -> str:
    v = os.environ.get("ULMFIT_BF16", "auto").strip().lower()
    if v in ("", "auto"):
        return "auto"
    if v in ON_WORDS:
        return "on"
    if v in OFF_WORDS:
        return "off"
    raise UlmfitError(f"ULMFIT_BF16={v!r}: expected auto, on or off")


@lru_cache(maxsize=None)
def _choice(setting: str) -> tuple[bool, str]:
    if setting == "off":
        return False, "ULMFIT_BF16=off"
    if not bf16_supported():
        return False, "this CPU has no bf16 support"
    if setting == "on":
        return True, "ULMFIT_BF16=on"
    s = bf16_speedup()
    if s >= MIN_SPEEDUP:
        return True, f"bf16 matmuls {s:.2f}x as fast as fp32 here"
    return False, f"bf16 matmuls only {s:.2f}x as fast as fp32 here; ULMFIT_BF16=on forces bf16"


def bf16_pays() -> bool:
    """Use bf16 autocast on the CPU: supported, and measured to be faster than fp32 here."""
    return _choice(_setting())[0]


def bf16_reason() -> str:
    """Why `bf16_pays()` says what it says, for the log."""
    return _choice(_setting())[1]


def precision_line(use_bf16: bool, requested: bool, device: torch.device) -> str:
    """What a trainer will compute in, for its log: 'precision: fp32 (why)'."""
    if not requested:
        return "precision: fp32 (--no-bf16)"
    what = "bf16 autocast" if use_bf16 else "fp32"
    return f"precision: {what} ({bf16_reason()})" if device.type == "cpu" else f"precision: {what}"


def predicts_in_bf16(config: dict, device: torch.device) -> bool:
    """Whether a saved model predicts (or is evaluated) with bf16 autocast: in the precision it was
    trained and validated in, as its trainer chose it: never for a model trained with --no-bf16;
    on a GPU otherwise always; on the CPU where bf16 is measured to pay (`bf16_pays`); never under
    ULMFIT_BF16=off."""
    trained_bf16 = bool(config.get("train", {}).get("bf16", True))
    # ULMFIT_BF16=off: fp32 on any device (the same probabilities in any batch), not on the CPU alone
    return trained_bf16 and _setting() != "off" and (device.type != "cpu" or bf16_pays())
