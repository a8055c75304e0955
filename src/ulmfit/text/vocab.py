"""Tokens -> ids: the vocabulary, built from counts, saved as plain text (one token a line)."""

from __future__ import annotations

import os
from collections import Counter
from typing import Iterable, Sequence

from ..io import UlmfitError
from .tokenize import SPECIAL_TOKENS, UNK


class Vocab:
    def __init__(self, itos: Sequence[str]):
        itos = list(itos)
        if itos[: len(SPECIAL_TOKENS)] != SPECIAL_TOKENS:
            raise ValueError(
                "a vocabulary must start with the special tokens " + " ".join(SPECIAL_TOKENS)
            )
        if len(set(itos)) != len(itos):
            raise ValueError("the vocabulary has duplicate tokens")
        self.itos = itos
        self.stoi = {t: i for i, t in enumerate(itos)}
        self.unk_id = self.stoi[UNK]

    @classmethod
    def build(cls, counts: Counter, max_vocab: int = 60000, min_freq: int = 3, keep=None) -> "Vocab":
        """Most frequent tokens first (ties broken alphabetically, so builds are reproducible).

        Tokens in `keep` (e.g. a pretrained model's vocabulary when fine-tuning on a small text)
        get an id when they occur at all; the others need min_freq occurrences."""
        if max_vocab <= len(SPECIAL_TOKENS):
            raise UlmfitError(f"a vocabulary cap of {max_vocab} leaves no room for words beside the "
                              f"{len(SPECIAL_TOKENS)} special tokens: give at least {len(SPECIAL_TOKENS) + 1}")
        keep = keep or ()
        words = [
            w for w, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            if (c >= min_freq or w in keep) and w not in SPECIAL_TOKENS
        ]
        return cls(SPECIAL_TOKENS + words[: max(0, max_vocab - len(SPECIAL_TOKENS))])

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def numericalize(self, tokens: Iterable[str]) -> list[int]:
        get, unk = self.stoi.get, self.unk_id
        return [get(t, unk) for t in tokens]

    def textify(self, ids: Iterable[int]) -> list[str]:
        return [self.itos[int(i)] for i in ids]

    def save(self, path: str | os.PathLike) -> None:
        from ..io import atomic_write_text

        atomic_write_text(path, "\n".join(self.itos) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Vocab":
        with open(path, encoding="utf-8") as f:
            itos = f.read().split("\n")
        if itos and itos[-1] == "":
            itos.pop()
        return cls(itos)


UNKNOWN_WARN_SHARE = 0.25  # English text under the shipped 30k vocabulary: a few percent


def unknown_share(ids, sample: int = 4_000_000) -> float:
    """The share of xxunk among the words of `ids` (one id array, or a list of them, one a document):
    tokens that are xxunk or a vocabulary word, not the markers (xxbos, xxmaj, ...). About `sample`
    ids are read: from a long array, 1,000 evenly spaced runs of them (a memory-mapped corpus reads
    those pages alone); from a list, evenly spaced documents (no copy of them all)."""
    import numpy as np

    unk_id, first_word = SPECIAL_TOKENS.index(UNK), len(SPECIAL_TOKENS)
    if isinstance(ids, (list, tuple)):
        total = sum(len(a) for a in ids)
        docs = ids
        if total > sample:
            docs = [ids[i] for i in np.unique(np.linspace(0, len(ids) - 1, max(1, len(ids) * sample // total))
                                              .astype(np.int64))]
        parts = [np.asarray(a) for a in docs]
    else:
        n = len(ids)
        runs = 1000
        if n > sample:
            width = sample // runs
            parts = [np.asarray(ids[s:s + width]) for s in np.linspace(0, n - width, runs).astype(np.int64)]
        else:
            parts = [np.asarray(ids)]
    unk = sum(int(np.count_nonzero(a == unk_id)) for a in parts)
    words = unk + sum(int(np.count_nonzero(a >= first_word)) for a in parts)
    return unk / words if words else 0.0


def unknown_warning(share: float, what: str, kind: str, fixed_vocab: bool = False) -> str | None:
    """The warning for `what` (the target text, the training texts) when `share` of its words are
    xxunk, else None. `fixed_vocab`: the words are a trained model's (train-classifier, lm-eval:
    no --max-vocab there)."""
    if share < UNKNOWN_WARN_SHARE:
        return None
    also = ("so do words of a language model not fine-tuned on text like this one (`ulmfit finetune-lm` gives "
            "it this text's words)" if fixed_vocab else "so does a vocabulary cap (--max-vocab) too small for the text")
    why = ("the word tokeniser splits text at spaces and punctuation, so text written without spaces "
           "(Chinese, Japanese, Thai) or in a language the model has not seen becomes xxunk (for such text, "
           f"pretrain a model on it with `ulmfit pretrain --tokenizer subword`); {also}" if kind != "subword" else
           "the text is unlike the text the model's subword pieces were made from")
    return f"{share:.0%} of the words of {what} are xxunk, unknown to the model, which sees them all as one word: {why}"
