"""AWD-LSTM's regularisers (Merity et al. 2017, section 4; ULMFiT section 3).

- ``embedding_dropout``: drops whole words, i.e. rows of the embedding matrix, and rescales the rest.
- ``LockedDropout``: variational dropout, one mask per sequence reused at every time step
  (used on the embedding output, between LSTM layers and before the decoder).
- weight dropout (DropConnect on the hidden-to-hidden matrices) lives in ``awd_lstm.WeightDropLSTM``
  because it has to feed the dropped matrix to the fused LSTM kernel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def embedding_dropout(weight: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Return `weight` with whole rows zeroed with probability p and the kept rows scaled by 1/(1-p).

    A dropped row means that word is absent everywhere in this batch: the model must learn to
    read it from context.
    """
    if not training or p == 0.0:
        return weight
    keep = weight.new_empty((weight.size(0), 1)).bernoulli_(1 - p) / (1 - p)
    return weight * keep


class EmbeddingDropout(nn.Module):
    """An embedding lookup through a word-dropped matrix (the matrix is shared, e.g. with a tied decoder)."""

    def __init__(self, emb: nn.Embedding, p: float):
        super().__init__()
        self.emb, self.p = emb, p

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        w = embedding_dropout(self.emb.weight, self.p, self.training)
        return F.embedding(ids, w, self.emb.padding_idx)


class LockedDropout(nn.Module):
    """Dropout whose mask is drawn once per sequence and shared across time (input is [batch, time, features])."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        mask = x.new_empty((x.size(0), 1, x.size(2))).bernoulli_(1 - self.p) / (1 - self.p)
        return x * mask

    def extra_repr(self) -> str:
        return f"p={self.p}"
