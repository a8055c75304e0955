"""Next-token cross-entropy over a large vocabulary without materialising the logits.

A language model's softmax layer dominates its memory: bs 64 x bptt 70 x 60,000 words is a
1 GB fp32 logit tensor, plus as much again for its gradient and the log-softmax. Allocating and
faulting in those pages every batch costs more CPU time than the matmuls around them. Since the
loss is the last node of the graph, its gradients with respect to the hidden states, the decoder
weight and bias can be computed in the forward pass, chunk by chunk, in a buffer of a few MB:
d loss / d logits = softmax - onehot. The backward pass then only scales the stored gradients.
The FLOPs are those of an ordinary forward + backward; only the memory traffic is gone.
"""

from __future__ import annotations

import torch

# Rows of logits computed at once: a chunk is CHUNK_ELEMENTS floats (~32 MB), whatever the vocabulary.
CHUNK_ELEMENTS = 1 << 23


def _compute_dtype() -> torch.dtype | None:
    if torch.is_autocast_enabled("cpu"):
        return torch.get_autocast_dtype("cpu")
    return None


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, weight, bias, targets, compute_dtype, need_grad, count_correct):
        n, vocab = h.size(0), weight.size(0)
        rows = max(16, CHUNK_ELEMENTS // vocab)
        dt = compute_dtype or h.dtype
        w = weight.to(dt)
        hh = h.to(dt)
        b = bias.to(dt)
        loss = torch.zeros((), dtype=torch.float32)
        correct = torch.zeros((), dtype=torch.long)
        if need_grad:
            grad_h = torch.empty(h.shape, dtype=torch.float32)
            grad_w = torch.zeros(weight.shape, dtype=torch.float32)
            grad_b = torch.zeros(vocab, dtype=torch.float32)
        for s in range(0, n, rows):
            e = min(n, s + rows)
            hc, tc = hh[s:e], targets[s:e]
            logits = torch.addmm(b, hc, w.t())
            # Softmax in fp32 (PyTorch widens bf16 logits first, then one row-wise kernel).
            p = torch.softmax(logits, 1, dtype=torch.float32)
            del logits
            if count_correct:  # argmax over fp32 is ~5x faster than over bf16 on this CPU
                correct += (p.argmax(1) == tc).sum()
            r = torch.arange(e - s)
            loss -= p[r, tc].clamp_min(1e-38).log().sum()
            if need_grad:
                p[r, tc] -= 1.0  # d loss / d logits = softmax - onehot
                pd = p.to(dt)
                grad_h[s:e] = pd @ w
                grad_w += (pd.t() @ hc).float()
                grad_b += p.sum(0)
        if need_grad:
            ctx.save_for_backward(grad_h / n, grad_w / n, grad_b / n)
        ctx.h_dtype = h.dtype
        ctx.mark_non_differentiable(correct)
        return loss / n, correct

    @staticmethod
    def backward(ctx, grad_loss, _grad_correct):
        grad_h, grad_w, grad_b = ctx.saved_tensors
        return (grad_h * grad_loss).to(ctx.h_dtype), grad_w * grad_loss, grad_b * grad_loss, None, None, None, None


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
