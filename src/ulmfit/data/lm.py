"""Language-model batches: bs contiguous token streams cut by AWD-LSTM's variable-length BPTT.

AWD-LSTM (Merity et al. 2017, section 4.1) and ULMFiT train the LM on one long text: the
documents, in a new random order every epoch, are concatenated and the result is cut into bs
equal streams, one per batch row. Batch k holds the next seq_len tokens of every stream, so the
hidden state carried from batch k to batch k+1 has read exactly the text before it. seq_len is
bptt with probability 0.95 and bptt/2 otherwise, then drawn from N(that, 5): the cut points move
from epoch to epoch, so every token is trained on with different amounts of context. The backward
LM of ULMFiT's bidirectional ensemble reads the same stream reversed.

The concatenation is never built (a corpus may not fit in memory): a window of the virtual
stream is mapped to (document, offset) by a binary search over the cumulative lengths of the
documents in this epoch's order, and gathered from the memory-mapped ids.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from ..io import UlmfitError
from .cache import TokenIds


class LMStream:
    """bs contiguous streams over the corpus with AWD-LSTM's variable BPTT.

    Everything (document order, sequence lengths) is a function of (seed, epoch), so an epoch
    can be replayed, or resumed at any batch, identically.
    """

    def __init__(
        self,
        data: TokenIds,
        bs: int = 64,
        bptt: int = 70,
        *,
        seed: int = 0,
        shuffle: bool = True,
        variable_bptt: bool = True,
        backwards: bool = False,
        min_seq_len: int = 5,
        shard: tuple[int, int] = (0, 1),
    ):
        if bs < 1 or bptt < 1 or min_seq_len < 1:
            raise UlmfitError("bs, bptt and min_seq_len must be positive")
        n = data.n_tokens()
        if n < 2 * bs + 1:
            raise UlmfitError(
                f"the text has {n} tokens, too few for a batch of {bs} streams (at least {2 * bs + 1} "
                f"are needed); use a smaller --bs"
            )
        self.data, self.bs, self.bptt, self.seed = data, bs, bptt, seed
        self.shuffle, self.variable_bptt, self.backwards = shuffle, variable_bptt, backwards
        self.min_seq_len = min_seq_len
        self.max_seq_len = bptt + 20  # a rare long draw must not blow up activation memory
        self.n_tokens = n
        # Data-parallel training: bs * world streams in all, this process reads rows
        # [rank * bs, (rank + 1) * bs); every process gets the same sequence lengths.
        self.rank, self.world = shard
        if not 0 <= self.rank < self.world:
            raise UlmfitError(f"invalid shard {shard}")
        total = bs * self.world
        if n < 2 * total + 1:
            raise UlmfitError(
                f"the text has {n} tokens, too few for {self.world} processes x {bs} streams; use a smaller --bs"
            )
        self.stream_len = (n - 1) // total  # x and y of a stream are shifted by one token
        self._layout_cache: tuple[int, np.ndarray, np.ndarray] | None = None
        self._lens_cache: tuple[int, list[int]] | None = None

    @classmethod
    def for_eval(cls, data: TokenIds, bs: int = 64, bptt: int = 70, *, backwards: bool = False) -> "LMStream":
        """Validation: the stored order and fixed-length windows, the same every time."""
        return cls(data, bs, bptt, shuffle=False, variable_bptt=False, backwards=backwards)

    # -- the epoch's plan ------------------------------------------------------------------------

    def seq_lens(self, epoch: int) -> list[int]:
        """The sequence length of every batch of `epoch`; they sum to the stream length."""
        if self._lens_cache is not None and self._lens_cache[0] == epoch:
            return self._lens_cache[1]
        L, bptt = self.stream_len, self.bptt
        if not self.variable_bptt:
            lens = [bptt] * (L // bptt) + ([L % bptt] if L % bptt else [])
        else:
            rng = np.random.default_rng([self.seed, epoch, 1])
            lens = []
            need = L
            while need > 0:  # draw in blocks (a Python loop per batch is slow for 100M tokens)
                k = int(need / (0.9 * bptt)) + 16
                base = np.where(rng.random(k) < 0.95, bptt, bptt / 2)
                drawn = rng.normal(base, 5).astype(np.int64)  # int() of the draw, as in AWD-LSTM
                drawn = np.clip(drawn, self.min_seq_len, max(self.min_seq_len, self.max_seq_len))
                cum = np.cumsum(drawn)
                m = int(np.searchsorted(cum, need, side="left"))
                if m < k:  # the stream ends inside draw m: truncate it
                    lens.extend(drawn[:m].tolist())
                    lens.append(int(need - (cum[m - 1] if m else 0)))
                    need = 0
                else:
                    lens.extend(drawn.tolist())
                    need -= int(cum[-1])
        self._lens_cache = (epoch, lens)
        return lens

    def n_batches(self, epoch: int) -> int:
        return len(self.seq_lens(epoch))

    def __len__(self) -> int:
        return self.n_batches(0)

    def _layout(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(start in ids of each document, cumulative lengths) in this epoch's document order."""
        if self._layout_cache is not None and self._layout_cache[0] == epoch:
            return self._layout_cache[1], self._layout_cache[2]
        starts, lengths = self.data.starts, self.data.lengths()
        if self.shuffle:
            order = np.random.default_rng([self.seed, epoch, 0]).permutation(len(starts))
            starts, lengths = starts[order], lengths[order]
        cum = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=cum[1:])
        self._layout_cache = (epoch, starts, cum)
        return starts, cum

    def _gather(self, pos: np.ndarray, starts: np.ndarray, cum: np.ndarray) -> np.ndarray:
        """The tokens at positions `pos` (any shape) of the virtual stream."""
        if self.backwards:
            pos = self.n_tokens - 1 - pos  # the backward LM reads the whole stream reversed
        doc = np.searchsorted(cum, pos, side="right") - 1
        return np.asarray(self.data.ids[starts[doc] + (pos - cum[doc])], dtype=np.int64)

    # -- batches -------------------------------------------------------------------------------

    def iter_epoch(self, epoch: int, start_batch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
        """Yield (x, y, seq_len): int64 tensors [bs, seq_len], y[:, t] the token after x[:, t].

        start_batch=k skips the first k batches, giving exactly what an uninterrupted epoch would
        have yielded from batch k on (resuming mid-epoch)."""
        lens = self.seq_lens(epoch)
        starts, cum = self._layout(epoch)
        pos = sum(lens[:start_batch])
        rows = np.arange(self.rank * self.bs, (self.rank + 1) * self.bs, dtype=np.int64)
        row_starts = (rows * self.stream_len)[:, None]
        for seq_len in lens[start_batch:]:
            window = self._gather(row_starts + (pos + np.arange(seq_len + 1)), starts, cum)
            x = torch.from_numpy(np.ascontiguousarray(window[:, :-1]))
            y = torch.from_numpy(np.ascontiguousarray(window[:, 1:]))
            yield x, y, seq_len
            pos += seq_len

    def __iter__(self):
        return self.iter_epoch(0)
