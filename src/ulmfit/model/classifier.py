"""The ULMFiT classifier (section 3.3): BPT3C over the AWD-LSTM encoder, masked concat pooling,
and a head of two BatchNorm -> Dropout -> Linear blocks trained from scratch.

BPT3C. A document is read in chunks of ``bptt`` tokens, each chunk starting from the previous
chunk's final state. Only a document's last ``max_len`` tokens are pooled and keep a graph (for
gradients); its earlier chunks run without one, so memory is bounded by max_len per document
whatever the documents' lengths, also in a batch that mixes short and very long ones (there the
rows that have not reached their window yet run in a separate call without a graph).

Padding. Documents are right-padded and the batch is ordered by length (longest first). The LSTM
is causal, so padding after a document never changes its outputs; a document that ends inside a
chunk simply drops out of the batch for the following chunks, so the state carried forward is
always that of a real token. Pooling masks padding out of the max, the mean and the last state.
The upshot, tested: in fp32 a document's prediction is the same (to rounding, ~1e-6) alone and in
any batch. Under bf16 autocast it agrees to about 1e-3: the matmul kernels round a batch of one
row differently from a larger one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from .awd_lstm import AWDLSTMConfig, AWDLSTMEncoder, check_settings

# The published classifier dropouts (before drop_mult): input 0.4, hidden 0.3, weight 0.5,
# embedding 0.05, output (first head layer) 0.4.
CLASSIFIER_DROPOUTS = dict(input_p=0.4, hidden_p=0.3, weight_p=0.5, embed_p=0.05, output_p=0.4)


@dataclass
class HeadConfig:
    n_classes: int
    hidden: int = 50  # the paper's 50-unit hidden layer
    head_p: float = 0.1  # dropout before the last linear layer (fastai's ps=[0.1])
    bptt: int = 70
    max_len: int = 1400  # tokens at the end of a document that are pooled and back-propagated (20 * bptt)
    multi_label: bool = False

    def __post_init__(self):
        check_settings(self, positive=("n_classes", "hidden", "bptt", "max_len"), rates=("head_p",))
        if self.hidden > 1 << 16 or self.n_classes > 1 << 20:  # a config from elsewhere: memory before weights
            raise ValueError(f"head hidden {self.hidden} / n_classes {self.n_classes} are beyond what ulmfit builds "
                             f"(at most {1 << 16:,} / {1 << 20:,})")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "HeadConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown head settings: {sorted(unknown)}")
        return cls(**d)


def masked_concat_pool(out: torch.Tensor, mask: torch.Tensor, lengths_kept: torch.Tensor) -> torch.Tensor:
    """[h_T, max_t h_t, mean_t h_t] over the unmasked positions of out [B, T, D]; mask [B, T] True = real.

    h_T is the output at each document's last real position (lengths_kept - 1 in `out`).
    BPT3CEncoder accumulates the same three statistics chunk by chunk; this one-pass form is the
    reference its tests compare against."""
    m = mask.unsqueeze(-1)
    neg = torch.finfo(out.dtype).min
    mx = out.masked_fill(~m, neg).max(1).values
    mean = (out * m).sum(1) / m.sum(1).clamp_min(1)
    last = out[torch.arange(out.size(0), device=out.device), (lengths_kept - 1).clamp_min(0)]
    return torch.cat([last, mx, mean], 1)


class BPT3CEncoder(nn.Module):
    """Runs the AWD-LSTM encoder over arbitrarily long documents, chunk by chunk (see module doc)."""

    def __init__(self, encoder: AWDLSTMEncoder, bptt: int = 70, max_len: int = 1400):
        super().__init__()
        self.encoder, self.bptt, self.max_len = encoder, bptt, max_len

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """ids [B, T] right-padded, lengths [B] -> pooled features [B, 3 * emb] (in the caller's order)."""
        B, T = ids.shape
        lengths = lengths.to(ids.device)
        order = torch.argsort(lengths, descending=True, stable=True)
        ids, lens = ids[order], lengths[order]
        lens_cpu = lens.tolist()
        T = max(1, min(T, lens_cpu[0] if lens_cpu else 1))
        state = self.encoder._zero_state(B, self.encoder.embedding.weight)
        # The pooled statistics are accumulated chunk by chunk: which chunks hold a document's
        # last max_len tokens differs from document to document, so in a batch of a short and a
        # very long document the kept chunks are not contiguous (the short one's, then a gap
        # of thousands of tokens, then the long one's end).
        mx = total = last = None
        grad = torch.is_grad_enabled()
        dev = ids.device.type
        weights = self.encoder.shared_weights(torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev)
                                              else None)
        for start in range(0, T, self.bptt):
            end = min(T, start + self.bptt)
            n = sum(1 for L in lens_cpu if L > start)  # documents still running (a prefix: sorted)
            if n == 0:
                break
            # rows [0, k) have not reached their last max_len tokens yet (the longest documents:
            # a prefix), rows [k, n) have tokens of it in this chunk. Only the latter keep a graph,
            # so a batch that mixes short and very long documents still back-propagates through
            # at most max_len tokens per document. Without gradients one call does all rows.
            k = sum(1 for L in lens_cpu[:n] if end <= L - self.max_len) if grad else 0
            new = []
            if k:
                with torch.no_grad():
                    _, _, st = self.encoder(ids[:k, start:end], state=[(h[:, :k].contiguous(), c[:, :k].contiguous())
                                                                       for h, c in state], keep_state=False,
                                            weights=weights, return_state=True)
                new.append([(h.detach(), c.detach()) for h, c in st])
            if k < n:  # the state as returned, not the encoder's last_state: other threads write that
                out, _, st = self.encoder(ids[k:n, start:end], state=[(h[:, k:n].contiguous(), c[:, k:n].contiguous())
                                                                      for h, c in state], keep_state=False,
                                          weights=weights, return_state=True)
                new.append(st)
            # rows >= n keep their (finished) state; only running rows advance
            state = [(torch.cat([*(part[i][0] for part in new), h[:, n:].to(new[0][i][0].dtype)], 1),
                      torch.cat([*(part[i][1] for part in new), c[:, n:].to(new[0][i][1].dtype)], 1))
                     for i, (h, c) in enumerate(state)]
            if k == n:
                continue
            if mx is None:
                mx = out.new_full((B, out.size(2)), torch.finfo(out.dtype).min)
                total = out.new_zeros(B, out.size(2), dtype=torch.float32)  # a sum over up to max_len steps
                last = out.new_zeros(B, out.size(2))
            L = lens[k:n]
            pos = torch.arange(start, end, device=out.device)[None, :]
            m = ((pos < L[:, None]) & (pos >= L[:, None] - self.max_len)).unsqueeze(-1)  # [n-k, chunk, 1]
            c_max = out.masked_fill(~m, torch.finfo(out.dtype).min).max(1).values
            c_sum = (out * m).sum(1, dtype=torch.float32)
            at = (L - 1 - start).clamp(0, end - start - 1)
            ends_here = ((L - 1 >= start) & (L - 1 < end)).unsqueeze(-1)
            c_last = torch.where(ends_here, out[torch.arange(n - k, device=out.device), at], last[k:n])
            mx = torch.cat([mx[:k], torch.maximum(mx[k:n], c_max), mx[n:]], 0)
            total = torch.cat([total[:k], total[k:n] + c_sum, total[n:]], 0)
            last = torch.cat([last[:k], c_last, last[n:]], 0)
        if mx is None:  # only empty documents
            dim = self.encoder.embedding.weight.size(1)
            mx = total = last = torch.zeros(B, dim, device=ids.device)
        count = lens.clamp(0, self.max_len).clamp_min(1).unsqueeze(-1)
        feats = torch.cat([last.float(), mx.float(), total / count], 1)
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(B, device=order.device)
        return feats[inverse]


class PoolingHead(nn.Module):
    """BatchNorm -> Dropout -> Linear(3*emb, 50) -> ReLU -> BatchNorm -> Dropout -> Linear(50, classes)."""

    def __init__(self, in_features: int, cfg: HeadConfig, first_p: float):
        super().__init__()
        self.layers = nn.Sequential(
            nn.BatchNorm1d(in_features), nn.Dropout(first_p), nn.Linear(in_features, cfg.hidden), nn.ReLU(inplace=True),
            nn.BatchNorm1d(cfg.hidden), nn.Dropout(cfg.head_p), nn.Linear(cfg.hidden, cfg.n_classes),
        )

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.layers(feats.float())


class AWDLSTMClassifier(nn.Module):
    """ids [B, T] + lengths [B] -> logits [B, classes]."""

    def __init__(self, arch: AWDLSTMConfig, head: HeadConfig):
        super().__init__()
        self.arch, self.head_cfg = arch, head
        self.encoder = AWDLSTMEncoder(arch)
        self.bpt3c = BPT3CEncoder(self.encoder, head.bptt, head.max_len)
        self.head = PoolingHead(3 * arch.emb_size, head, arch.dropout("output_p"))

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.head(self.bpt3c(ids, lengths))

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """Bottom to top: embedding, each LSTM layer, the head (the order gradual unfreezing undoes)."""
        return ([list(self.encoder.embedding.parameters())] + [list(r.parameters()) for r in self.encoder.rnns]
                + [list(self.head.parameters())])
