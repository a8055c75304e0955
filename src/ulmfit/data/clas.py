"""Batching for the classifier: token ids and labels, length-sorted batches, padding.

Documents vary from a dozen to thousands of tokens. Batching documents of similar length keeps
padding (wasted compute) small: training uses `SortishSampler` (random, but sorted within chunks
of 50 batches, as in the paper's code), evaluation and prediction `SortedBatches` (sorted by
length), and `restore_order` puts the per-batch outputs back into the caller's order.

Batches are right-padded with the pad id and come with each document's length, so the encoder and
the pooling can ignore the padding. Nothing is truncated by default: BPT3C runs the encoder over
long documents chunk by chunk. `truncate` caps a document's length for users who want to bound
the cost of prediction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..io import UlmfitError
from ..text.tokenize import TokenizerConfig, tokenize_parallel
from ..text.vocab import Vocab
from .cache import encode_texts, id_dtype
from .labeled import LabeledTexts, check_label_names

# Above this many texts, tokenise in worker processes (below, starting them costs more than it saves).
PARALLEL_MIN_TEXTS = 4000


# ---------------------------------------------------------------------------------------------
# Samplers


class SortishSampler:
    """Training batches: random, yet of documents of similar length.

    Per epoch: shuffle the indices, cut them into chunks of `chunk_batches` batches, sort each chunk
    by length (longest first) and cut it into batches of `bs`; the batch holding the longest document
    comes first (so that running out of memory happens at once, not hours in), the others follow in
    random order. A last batch of a single document is merged into the batch before it: the head's
    BatchNorm cannot train on a batch of one.
    """

    CHUNK_BATCHES = 50

    def __init__(self, lengths: Sequence[int], bs: int, seed: int = 0, chunk_batches: int | None = None):
        chunk_batches = self.CHUNK_BATCHES if chunk_batches is None else chunk_batches
        if bs < 1 or chunk_batches < 1:
            raise ValueError("bs and chunk_batches must be at least 1")
        self.lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
        self.bs, self.seed, self.chunk_batches = int(bs), int(seed), int(chunk_batches)

    def __len__(self) -> int:
        n, bs = len(self.lengths), self.bs
        n_batches = -(-n // bs)
        return n_batches - 1 if n > bs and n % bs == 1 else n_batches

    def batches(self, epoch: int) -> list[list[int]]:
        """The batches of `epoch` (lists of indices); the same (seed, epoch) gives the same batches."""
        n = len(self.lengths)
        if n == 0:
            return []
        rng = np.random.default_rng([abs(self.seed), int(epoch), 0x5047])
        perm = rng.permutation(n)
        size = self.bs * self.chunk_batches
        out: list[np.ndarray] = []
        for s in range(0, n, size):
            chunk = perm[s : s + size]
            chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
            out.extend(chunk[i : i + self.bs] for i in range(0, len(chunk), self.bs))
        if len(out) > 1 and len(out[-1]) == 1:
            last = out.pop()
            out[-1] = np.concatenate([out[-1], last])
        longest = int(np.argmax([self.lengths[b].max() for b in out]))
        first = out.pop(longest)
        rest = [out[i] for i in rng.permutation(len(out))]
        return [first.tolist()] + [b.tolist() for b in rest]


class SortedBatches:
    """Evaluation / prediction batches: indices sorted by length (longest first), cut into `bs`."""

    def __init__(self, lengths: Sequence[int], bs: int):
        if bs < 1:
            raise ValueError("bs must be at least 1")
        self.lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
        self.bs = int(bs)

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.bs)

    def batches(self) -> list[list[int]]:
        order = np.argsort(-self.lengths, kind="stable")
        return [order[i : i + self.bs].tolist() for i in range(0, len(order), self.bs)]


# ---------------------------------------------------------------------------------------------
# Padding and order


def truncate(seq, max_tokens: int, keep: str = "last"):
    """At most `max_tokens` tokens of `seq`: the first ones (keep="first") or the last ones
    (keep="last", the default: the published classifier pools over a document's last
    20*bptt tokens, so the end is what it learnt from)."""
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, not {max_tokens}")
    if keep == "first":
        return seq[:max_tokens]
    if keep == "last":
        return seq[-max_tokens:] if len(seq) > max_tokens else seq
    raise ValueError(f"keep must be 'first' or 'last', not {keep!r}")


def pad_batch(
    seqs: Sequence, pad_id: int, max_len: int | None = None, keep: str = "last"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids [B, T] int64, right-padded with `pad_id`; lengths [B] int64).

    Documents are kept whole unless `max_len` is given; then longer ones are cut with
    `truncate(seq, max_len, keep)`.
    """
    if len(seqs) == 0:
        raise ValueError("pad_batch needs at least one sequence")
    arrs = [np.asarray(s).astype(np.int64, copy=False).reshape(-1) for s in seqs]
    if max_len is not None:
        arrs = [truncate(a, max_len, keep) for a in arrs]
    lengths = np.fromiter((len(a) for a in arrs), dtype=np.int64, count=len(arrs))
    if (lengths == 0).any():
        raise ValueError(f"empty sequence at position {int(np.argmin(lengths))} of the batch")
    out = np.full((len(arrs), int(lengths.max())), pad_id, dtype=np.int64)
    for i, a in enumerate(arrs):
        out[i, : len(a)] = a
    return torch.from_numpy(out), torch.from_numpy(lengths)


def restore_order(batches: Sequence[Sequence[int]], outputs: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenate per-batch outputs (row j of outputs[b] belongs to index batches[b][j]) and put
    row i of the result at index i: the caller's original order."""
    if len(batches) != len(outputs):
        raise ValueError(f"{len(batches)} batches but {len(outputs)} outputs")
    if not batches:
        raise ValueError("restore_order needs at least one batch")
    for b, o in zip(batches, outputs):
        if o.shape[0] != len(b):
            raise ValueError(f"a batch of {len(b)} indices has an output of {o.shape[0]} rows")
    order = np.concatenate([np.asarray(b, dtype=np.int64).reshape(-1) for b in batches])
    if not np.array_equal(np.sort(order), np.arange(len(order))):
        raise ValueError("the batches must hold each index 0..n-1 exactly once")
    cat = torch.cat(list(outputs), 0)
    out = torch.empty_like(cat)
    out[torch.from_numpy(order).to(cat.device)] = cat
    return out


# ---------------------------------------------------------------------------------------------
# Token ids + labels


@dataclass(repr=False, eq=False)
class ClassificationData:
    """Tokenised documents (each an id array starting with xxbos) and their labels.

    `labels` is an int64 array of indices into `label_names`, or for multi-label data a float32
    multi-hot matrix [n_docs, n_labels].
    """

    ids: list[np.ndarray]
    labels: np.ndarray
    label_names: list[str]
    multi_label: bool = False
    source: str = ""

    def __post_init__(self):
        self.labels = np.asarray(self.labels)
        if len(self.labels) != len(self.ids):
            raise ValueError(f"{len(self.ids)} documents but {len(self.labels)} labels")
        if self.multi_label and (self.labels.ndim != 2 or self.labels.shape[1] != len(self.label_names)):
            raise ValueError("multi-label labels must be a [n_docs, n_labels] matrix")

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        kind = "multi-label" if self.multi_label else "single-label"
        return f"ClassificationData({len(self)} docs, {len(self.label_names)} labels, {kind})"

    def lengths(self) -> np.ndarray:
        return np.fromiter((len(a) for a in self.ids), dtype=np.int64, count=len(self.ids))

    def subset(self, indices: Sequence[int]) -> "ClassificationData":
        idx = np.asarray(indices, dtype=np.int64)
        return ClassificationData([self.ids[i] for i in idx], self.labels[idx], self.label_names,
                                  self.multi_label, self.source)

    def batch(
        self, indices: Sequence[int], pad_id: int, max_len: int | None = None, keep: str = "last"
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(ids [B, T], lengths [B], labels [B] int64 or [B, n_labels] float32) of `indices`."""
        x, lengths = pad_batch([self.ids[i] for i in indices], pad_id, max_len, keep)
        y = torch.from_numpy(np.ascontiguousarray(self.labels[np.asarray(indices, dtype=np.int64)]))
        return x, lengths, y

    @classmethod
    def from_labeled(
        cls,
        data: LabeledTexts,
        tok_cfg: TokenizerConfig,
        vocab: Vocab,
        sp_model: str | None = None,
        label_names: Sequence[str] | None = None,
        n_workers: int | None = None,
        progress: bool = True,
    ) -> "ClassificationData":
        """Tokenise `data` as the language model was (tok_cfg, vocab, SentencePiece model) and map
        its labels to indices: of `label_names` when given (a classifier's labels, for test data;
        an unknown label raises), else of ``data.label_names()``."""
        multi = data.multi_label
        if label_names is None:
            names = data.label_names()
        else:
            names = [str(x) for x in label_names]
            if len(set(names)) != len(names):
                raise UlmfitError(f"duplicate label names in {names}")
            check_label_names(names, data, "given", "the classifier's labels (" + ", ".join(names) + ")")
        index = {x: i for i, x in enumerate(names)}
        if multi:
            labels = np.zeros((len(data), len(names)), dtype=np.float32)
            for r, labs in enumerate(data.labels):
                for x in labs:
                    labels[r, index[x]] = 1.0
        else:
            labels = np.fromiter((index[x] for x in data.labels), dtype=np.int64, count=len(data))
        ids = _encode(data.texts, tok_cfg, vocab, sp_model, n_workers, progress)
        return cls(ids, labels, names, multi, data.source)


def _encode(texts, tok_cfg, vocab, sp_model, n_workers, progress) -> list[np.ndarray]:
    dtype = id_dtype(len(vocab))
    if len(texts) < PARALLEL_MIN_TEXTS or n_workers == 1:
        return [a.astype(dtype) for a in encode_texts(texts, tok_cfg, vocab, sp_model)]
    subword = tok_cfg.kind == "subword"
    out = []
    for r in tokenize_parallel(texts, tok_cfg, str(sp_model) if sp_model else None, n_workers=n_workers,
                               desc="tokenizing", progress=progress):
        out.append(np.asarray(r if subword else vocab.numericalize(r), dtype=dtype))
    return out

