"""LM batches: bs contiguous streams over the shuffled corpus, cut by AWD-LSTM's variable BPTT."""

import numpy as np
import pytest
import torch

from ulmfit.data.cache import TokenIds
from ulmfit.data.lm import LMStream
from ulmfit.io import UlmfitError
from ulmfit.text.tokenize import SPECIAL_TOKENS
from ulmfit.text.vocab import Vocab


def corpus(lengths):
    """Token i of the stored corpus has id i, so every token can be traced back."""
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return TokenIds(np.arange(offsets[-1], dtype=np.uint32), offsets, Vocab(SPECIAL_TOKENS))


DATA = corpus(np.random.default_rng(0).integers(1, 40, 60))


def batches(stream, epoch=0, start=0):
    return list(stream.iter_epoch(epoch, start))


def stitched(stream, epoch=0):
    """The text each row read, rows joined end to end: the whole virtual stream."""
    bs = batches(stream, epoch)
    rows = [torch.cat([x[i] for x, _, _ in bs] + [bs[-1][1][i, -1:]]) for i in range(stream.bs)]
    for a, b in zip(rows, rows[1:]):  # stream i ends where stream i+1 starts
        assert a[-1] == b[0]
    return torch.cat([rows[0]] + [r[1:] for r in rows[1:]]).numpy()


def test_batches_are_int64_and_y_is_x_shifted_by_one():
    s = LMStream(DATA, bs=4, bptt=10)
    for x, y, n in batches(s):
        assert x.dtype == y.dtype == torch.int64 and x.shape == y.shape == (4, n)
        assert torch.equal(x[:, 1:], y[:, :-1])


def test_consecutive_batches_of_a_row_are_contiguous():
    bs = batches(LMStream(DATA, bs=4, bptt=10))
    for (x0, y0, _), (x1, _, _) in zip(bs, bs[1:]):
        assert torch.equal(y0[:, -1], x1[:, 0])


def test_stored_order_stream_covers_the_corpus():
    s = LMStream(DATA, bs=5, bptt=8, shuffle=False)
    n = DATA.n_tokens()
    assert np.array_equal(stitched(s), np.arange(5 * ((n - 1) // 5) + 1))


def test_shuffled_stream_is_whole_documents_in_a_new_order():
    s = LMStream(DATA, bs=3, bptt=10, seed=1)
    text = stitched(s)
    assert len(np.unique(text)) == len(text) == 3 * ((DATA.n_tokens() - 1) // 3) + 1
    starts = [int(DATA.starts[i]) for i in range(DATA.n_docs())]
    pos = {int(t): j for j, t in enumerate(text)}
    read = [d for d in range(DATA.n_docs()) if starts[d] in pos]
    for d in read:  # each document that is read is read whole and in order (the last may be cut)
        doc = DATA.doc(d)
        j = pos[int(doc[0])]
        assert np.array_equal(text[j : j + len(doc)], doc[: len(text) - j])
    assert sorted(read, key=lambda d: pos[starts[d]]) != sorted(read)  # not the stored order


def test_same_seed_and_epoch_give_identical_batches_and_epochs_differ():
    a, b = LMStream(DATA, bs=4, bptt=10, seed=7), LMStream(DATA, bs=4, bptt=10, seed=7)
    for (xa, ya, na), (xb, yb, nb) in zip(batches(a, 2), batches(b, 2)):
        assert na == nb and torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not np.array_equal(stitched(a, 0), stitched(a, 1))


def test_start_batch_resumes_with_exactly_the_rest_of_the_epoch():
    s = LMStream(DATA, bs=4, bptt=10, seed=3)
    full = batches(s, epoch=1)
    tail = batches(LMStream(DATA, bs=4, bptt=10, seed=3), epoch=1, start=3)
    assert len(tail) == len(full) - 3
    for (xf, yf, nf), (xt, yt, nt) in zip(full[3:], tail):
        assert nf == nt and torch.equal(xf, xt) and torch.equal(yf, yt)


def test_backwards_reads_the_stream_reversed():
    n = DATA.n_tokens()
    back = stitched(LMStream(DATA, bs=4, bptt=10, shuffle=False, backwards=True))
    assert np.array_equal(back, np.arange(n)[::-1][: len(back)])  # each document reversed
    fwd = stitched(LMStream(DATA, bs=4, bptt=10, seed=5))
    back = stitched(LMStream(DATA, bs=4, bptt=10, seed=5, backwards=True))
    overlap = np.arange(n - len(fwd), len(back))  # positions both streams read
    assert np.array_equal(back[overlap], fwd[n - 1 - overlap])


def test_variable_bptt_is_mostly_bptt_sometimes_half():
    s = LMStream(corpus([700_001]), bs=1, bptt=70, seed=0)
    lens = np.array(s.seq_lens(0))
    assert lens.sum() == s.stream_len and len(lens) == s.n_batches(0) == len(s)
    body = lens[:-1]  # the last one is cut where the stream ends
    assert body.min() >= 5 and body.max() <= 90
    near_full, near_half = np.abs(body - 70) <= 17, np.abs(body - 35) <= 17
    assert near_full.mean() + near_half.mean() == pytest.approx(1.0, abs=0.005)
    assert 0.93 < near_full.mean() < 0.97
    assert s.seq_lens(0) == LMStream(corpus([700_001]), bs=1, bptt=70, seed=0).seq_lens(0)
    assert s.seq_lens(1) != s.seq_lens(0)


def test_fixed_bptt_for_evaluation():
    s = LMStream.for_eval(DATA, bs=4, bptt=10)
    lens = s.seq_lens(0)
    assert set(lens[:-1]) == {10} and sum(lens) == s.stream_len


def test_too_few_tokens_for_the_batch_size_is_a_clear_error():
    with pytest.raises(UlmfitError, match="--bs"):
        LMStream(corpus([20]), bs=16)
