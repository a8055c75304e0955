"""Heads on the AWD-LSTM encoder.

- ``LMDecoder``: locked output dropout, then a linear layer whose weight is the embedding matrix
  (weight tying, Inan et al. 2016 / Press & Wolf 2017) when the config ties them.
- ``AWDLSTMLanguageModel``: encoder + decoder, with the AR/TAR regularisers of AWD-LSTM.
"""

from __future__ import annotations

import torch
from torch import nn

from .awd_lstm import AWDLSTMConfig, AWDLSTMEncoder
from .dropout import LockedDropout
from .loss import linear_cross_entropy


class LMDecoder(nn.Module):
    def __init__(self, cfg: AWDLSTMConfig, tie_to: nn.Embedding | None):
        super().__init__()
        self.output_dp = LockedDropout(cfg.dropout("output_p"))
        self.decoder = nn.Linear(cfg.emb_size, cfg.vocab_size)
        nn.init.zeros_(self.decoder.bias)
        if tie_to is not None:
            self.decoder.weight = tie_to.weight  # one Parameter, two uses

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.output_dp(h))


class AWDLSTMLanguageModel(nn.Module):
    """AWD-LSTM language model: ids [batch, time] -> next-token logits [batch, time, vocab]."""

    def __init__(self, cfg: AWDLSTMConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = AWDLSTMEncoder(cfg)
        self.decoder = LMDecoder(cfg, self.encoder.embedding if cfg.tie_weights else None)

    def reset(self) -> None:
        self.encoder.reset()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h, _ = self.encoder(ids)
        return self.decoder(h)

    def loss(self, ids: torch.Tensor, targets: torch.Tensor, ar_alpha: float = 2.0, tar_beta: float = 1.0):
        """Mean next-token cross-entropy plus AR/TAR; returns (total loss, cross-entropy, n correct).

        AR penalises large activations of the dropped last-layer output, TAR large changes of
        the raw output between consecutive steps (Merity et al. 2017, section 4.6). The logits
        are never materialised for the whole batch (see ``loss.linear_cross_entropy``).
        """
        raw, _ = self.encoder(ids)
        dropped = self.decoder.output_dp(raw)
        lin = self.decoder.decoder
        ce, correct = linear_cross_entropy(dropped, lin.weight, lin.bias, targets)
        total = ce
        if self.training and ar_alpha:
            total = total + ar_alpha * dropped.float().pow(2).mean()
        if self.training and tar_beta and raw.size(1) > 1:
            total = total + tar_beta * (raw[:, 1:] - raw[:, :-1]).float().pow(2).mean()
        return total, ce.detach(), correct
