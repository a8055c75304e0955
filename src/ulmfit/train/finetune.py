"""ULMFiT's fine-tuning tools (section 3.2-3.3): layer groups, discriminative learning rates,
freezing and gradual unfreezing, and moving a pretrained LM onto a new vocabulary.
"""

from __future__ import annotations

import torch
from torch import nn

from ..model.heads import AWDLSTMLanguageModel
from .schedules import discriminative_lrs


def lm_layer_groups(model: AWDLSTMLanguageModel) -> list[list[nn.Parameter]]:
    """Groups from the bottom of the network to the top: each LSTM layer, then the embedding
    together with the decoder.

    The embedding sits in the top group because, with tied weights, it *is* the decoder: a
    frozen language model still has to learn vectors for the words new to the target text,
    so the first fine-tuning epoch trains exactly the embedding/decoder (fastai's split).
    """
    groups = [list(rnn.parameters()) for rnn in model.encoder.rnns]
    top = list(model.encoder.embedding.parameters())
    top += [p for p in model.decoder.parameters() if all(p is not q for q in top)]
    groups.append(top)
    return groups


def freeze_to(groups: list[list[nn.Parameter]], n: int) -> None:
    """Train only groups[n:] (n may be negative: -1 trains the top group alone); 0 unfreezes all."""
    n = n % len(groups) if n < 0 else n
    for i, g in enumerate(groups):
        for p in g:
            p.requires_grad_(i >= n)


def param_groups(groups: list[list[nn.Parameter]], lr: float, wd: float, factor: float = 2.6) -> list[dict]:
    """Optimizer parameter groups with discriminative rates; 'max_lr' is each group's peak rate."""
    out = []
    for params, glr in zip(groups, discriminative_lrs(lr, len(groups), factor)):
        out.append({"params": params, "lr": glr, "max_lr": glr, "weight_decay": wd})
    return out


def transfer_vocab(old_weight: torch.Tensor, old_itos: list[str], new_itos: list[str],
                   old_bias: torch.Tensor | None = None):
    """Rows of the pretrained embedding (and decoder bias) re-indexed for a new vocabulary.

    Tokens the pretrained model knows keep their vectors; new tokens start at the mean vector
    (and the mean bias), as in ULMFiT, so they begin as an 'average word' rather than noise.
    Returns (weight, bias, number of tokens found).
    """
    old_index = {t: i for i, t in enumerate(old_itos)}
    mean_w = old_weight.mean(0)
    new_w = mean_w.repeat(len(new_itos), 1)
    new_b = None
    if old_bias is not None:
        new_b = old_bias.new_full((len(new_itos),), float(old_bias.mean()))
    found = 0
    src, dst = [], []
    for j, tok in enumerate(new_itos):
        i = old_index.get(tok)
        if i is not None:
            src.append(i)
            dst.append(j)
    if src:
        src_t, dst_t = torch.tensor(src), torch.tensor(dst)
        new_w[dst_t] = old_weight[src_t]
        if new_b is not None:
            new_b[dst_t] = old_bias[src_t]
        found = len(src)
    return new_w, new_b, found
