"""Next-token cross-entropy over a large vocabulary without materialising the fp32 logits.

A language model's softmax layer dominates its memory: bs 64 x bptt 70 x 60,000 words is a
1 GB fp32 logit tensor, plus as much again for its gradient and the log-softmax. Allocating and
faulting in those pages every batch costs more CPU time than the matmuls around them. Since the
loss is the last node of the graph, its gradients with respect to the hidden states, the decoder
weight and bias can be computed in the forward pass, chunk of rows by chunk of rows:
d loss / d logits = (softmax - onehot) / n. The backward pass then only hands them out.

Two ways to get the weight gradient, chosen by size:
- the gradient of the logits of the whole batch fits in GRAD_BUFFER_BYTES (in the compute dtype:
  bf16 under autocast, 0.54 GB for the paper configuration): each chunk writes its rows of it, and
  the weight gradient is one large matmul at the end -- the same FLOPs and matmul shapes as a
  plain `F.linear` + `F.cross_entropy`, at half its memory traffic;
- otherwise each chunk adds its share to an fp32 weight gradient (bounded memory, a little slower).
"""

from __future__ import annotations

import torch

# Rows of logits computed at once: a chunk is CHUNK_ELEMENTS floats (128 MB), whatever the vocabulary.
CHUNK_ELEMENTS = 1 << 25
# Largest whole-batch logit-gradient buffer; above it the weight gradient is accumulated per chunk.
GRAD_BUFFER_BYTES = 5 << 28  # 1.25 GiB


def _compute_dtype() -> torch.dtype | None:
    if torch.is_autocast_enabled("cpu"):
        return torch.get_autocast_dtype("cpu")
    return None


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, weight, bias, targets, compute_dtype, need_grad, count_correct):
        n, vocab = h.size(0), weight.size(0)
        rows = max(16, CHUNK_ELEMENTS // vocab)
        # Equal chunks: a small remainder chunk costs as much as a full one in oneDNN's matmul.
        rows = -(-n // -(-n // rows))
        dt = compute_dtype or h.dtype
        w = weight.to(dt)
        wt = w.t()
        hh = h.to(dt)
        b = bias.to(dt)
        inv_n = 1.0 / n
        loss = torch.zeros((), dtype=torch.float32)
        correct = torch.zeros((), dtype=torch.long)
        whole = need_grad and n * vocab * torch.finfo(dt).bits // 8 <= GRAD_BUFFER_BYTES
        if need_grad:
            grad_h = torch.empty(h.shape, dtype=dt)
            grad_b = torch.zeros(vocab, dtype=torch.float32)
            if whole:
                g_logits = torch.empty((n, vocab), dtype=dt)
            else:
                grad_w = torch.zeros(weight.shape, dtype=torch.float32)
        for s in range(0, n, rows):
            e = min(n, s + rows)
            hc, tc = hh[s:e], targets[s:e]
            # mm then an in-place bias add: addmm with a broadcast bias is ~15% slower here.
            logits = torch.mm(hc, wt).add_(b)
            # Softmax in fp32 (PyTorch widens bf16 logits first, then one row-wise kernel).
            p = torch.softmax(logits, 1, dtype=torch.float32)
            del logits
            if count_correct:  # argmax over fp32 is ~5x faster than over bf16 on this CPU
                correct += (p.argmax(1) == tc).sum()
            r = torch.arange(e - s)
            loss -= p[r, tc].clamp_min(1e-38).log().sum()
            if need_grad:
                p[r, tc] -= 1.0  # d loss / d logits = softmax - onehot
                grad_b.add_(p.sum(0), alpha=inv_n)
                if whole:  # scale and narrow in one pass, into the whole-batch buffer
                    gl = torch.mul(p, inv_n, out=g_logits[s:e])
                else:
                    gl = torch.mul(p, inv_n).to(dt)
                    grad_w.add_(gl.t() @ hc)
                grad_h[s:e] = gl @ w
            del p
        if need_grad:
            if whole:
                grad_w = g_logits.t() @ hh
                del g_logits
            ctx.save_for_backward(grad_h, grad_w, grad_b)
        ctx.h_dtype, ctx.w_dtype = h.dtype, weight.dtype
        ctx.mark_non_differentiable(correct)
        return loss * inv_n, correct

    @staticmethod
    def backward(ctx, grad_loss, _grad_correct):
        grads = ctx.saved_tensors
        if not (grad_loss.numel() == 1 and float(grad_loss) == 1.0):
            grads = [g * grad_loss for g in grads]
        grad_h, grad_w, grad_b = grads
        return (grad_h.to(ctx.h_dtype), grad_w.to(ctx.w_dtype), grad_b.to(ctx.w_dtype),
                None, None, None, None)


def linear_cross_entropy(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                         targets: torch.Tensor, count_correct: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy of softmax(h @ weight.T + bias) against targets, and the number of
    correct argmax predictions (counted when `count_correct`, by default only without gradients:
    the argmax is one more pass over every logit). h: [..., d]; targets: [...] (same leading shape)."""
    d = h.size(-1)
    h2 = h.reshape(-1, d)
    t = targets.reshape(-1).to(torch.long)
    if bias is None:
        bias = weight.new_zeros(weight.size(0))
    need_grad = torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad or bias.requires_grad)
    if h.device.type != "cpu":  # on an accelerator memory bandwidth is plentiful: plain autograd
        logits = torch.nn.functional.linear(h2, weight, bias).float()
        return torch.nn.functional.cross_entropy(logits, t), (logits.argmax(1) == t).sum()
    compute_dtype = _compute_dtype()
    with torch.autocast("cpu", enabled=False):
        if count_correct is None:
            count_correct = not need_grad
        return _LinearCrossEntropy.apply(h2, weight, bias, t, compute_dtype, need_grad, count_correct)
