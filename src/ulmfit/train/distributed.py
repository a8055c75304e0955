"""Data-parallel training with torch.distributed (launch with `torchrun --nproc_per_node N ulmfit ...`).

Each process reads its own rows of the LM streams, computes gradients on them, and the gradients
are averaged over processes before every optimizer step, so all processes hold the same weights
at all times. Only process 0 writes checkpoints, logs and progress. The gradients are averaged
by hand (flattened into one buffer per dtype) rather than through DistributedDataParallel,
because the trainer calls the model's ``loss`` method and carries hidden state between batches,
neither of which DDP's forward wrapper expects.
"""

from __future__ import annotations

import atexit
from datetime import timedelta

import torch
import torch.distributed as dist


def init_from_env(device: str | None = None) -> tuple[int, int, int]:
    """(rank, world size, local rank); starts the process group when launched by torchrun, with
    NCCL for GPUs and gloo for the CPU (`device`: the --device given, None or "auto" for the default)."""
    from ..io import launch_env

    world = launch_env()[1]
    if world <= 1 or not dist.is_available():
        return 0, 1, 0
    if not dist.is_initialized():
        on_gpu = torch.cuda.is_available() and (device is None or str(device) == "auto" or str(device).startswith("cuda"))
        backend = "nccl" if on_gpu else "gloo"  # --device cpu on a GPU machine: CPU tensors, gloo
        _bind_world_defaults_early()
        # Process 0 tokenises the corpus (hours for a WikiText-103-sized one not tokenised before
        # with `ulmfit corpus tokenize`), validates and checkpoints while the others wait.
        dist.init_process_group(backend, timeout=timedelta(hours=24))
        # Closed before the interpreter's exit: gloo's worker threads must end while Python still
        # runs (see _bind_world_defaults_early).
        atexit.register(shutdown)
    return dist.get_rank(), dist.get_world_size(), launch_env()[2]


def _bind_world_defaults_early() -> None:
    """Import torch.distributed.nn.functional before the process group starts.

    Its functions take `group=group.WORLD` as a default argument, evaluated when the module is
    first imported; torch imports it lazily (building the first optimizer imports torch._dynamo,
    which imports it). Imported after init_process_group, those defaults keep the world group alive
    for the life of the process: destroy_process_group then cannot free it, gloo's worker threads
    outlive it, and one of them releasing a finished collective while the interpreter exits aborts
    the process ("terminate called without an active exception"). Imported first, the defaults
    are None."""
    try:
        import torch.distributed.nn.functional  # noqa: F401
    except ImportError:  # a build without it has nothing to hold the group either
        pass


def single_process_only(what: str) -> None:
    """Refuse a command that does not train across processes when launched by torchrun (it would
    run once per process, side by side, writing the same files)."""
    from ..io import UlmfitError, launch_env

    if launch_env()[1] > 1:
        raise UlmfitError(f"{what} runs in one process: start it without torchrun (pretrain and finetune-lm "
                          "are the commands that train across processes)")


def shutdown() -> None:
    """Close the process group (at exit; the command line's torchrun workers call it themselves)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return rank_world()[0] == 0


def barrier() -> None:
    if rank_world()[1] > 1:
        dist.barrier()


class PartnerLost(RuntimeError):
    """A collective of the training loop failed: another process of the job is gone (killed, out of
    memory, its machine down). The trainer saves what this process holds (process 0) and stops."""


def _collective(call, /, *args, **kwargs):
    try:
        call(*args, **kwargs)
    except RuntimeError as e:  # gloo: "Connection closed by peer"; NCCL: DistBackendError (a RuntimeError)
        raise PartnerLost((str(e).splitlines() or [type(e).__name__])[0][:200]) from e


def average_gradients(params: list[torch.nn.Parameter]) -> None:
    world = rank_world()[1]
    if world == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    by_kind: dict[tuple, list[torch.Tensor]] = {}
    for g in grads:
        by_kind.setdefault((g.dtype, g.device), []).append(g)
    for gs in by_kind.values():
        flat = torch.cat([g.reshape(-1) for g in gs])
        _collective(dist.all_reduce, flat)
        flat /= world
        off = 0
        for g in gs:
            n = g.numel()
            g.copy_(flat[off:off + n].view_as(g))
            off += n


def broadcast_parameters(model: torch.nn.Module) -> None:
    """Start every process from process 0's weights."""
    if rank_world()[1] == 1:
        return
    with torch.no_grad():
        for t in model.state_dict().values():
            dist.broadcast(t, 0)


def any_process(flag: bool, device: torch.device) -> bool:
    """True when `flag` is true on any process (a stop decision all processes must share)."""
    if rank_world()[1] == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    _collective(dist.all_reduce, t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)
