"""Classifier batching: sortish / sorted batches, padding, restoring the order, tokenised labeled data."""

import numpy as np
import pytest
import torch

from ulmfit.data.clas import (
    ClassificationData,
    SortedBatches,
    SortishSampler,
    pad_batch,
    restore_order,
    truncate,
)
from ulmfit.data.labeled import LabeledTexts
from ulmfit.io import UlmfitError
from ulmfit.text.tokenize import SPECIAL_TOKENS, TokenizerConfig
from ulmfit.text.vocab import Vocab


def _lengths(n=1000, seed=0):
    return np.random.default_rng(seed).integers(1, 2000, size=n)


def test_sortish_sampler_covers_every_index_once_per_epoch():
    lengths = _lengths(1003)
    s = SortishSampler(lengths, bs=16, seed=1, chunk_batches=5)
    for epoch in range(3):
        batches = s.batches(epoch)
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(1003))
        assert len(batches) == len(s)
        assert all(1 < len(b) <= 17 for b in batches)  # 1003 = 62*16 + 11


def test_sortish_batches_are_roughly_sorted_and_the_longest_comes_first():
    lengths = _lengths(2000)
    batches = SortishSampler(lengths, bs=20, seed=0).batches(0)
    spread = np.mean([np.ptp(lengths[b]) for b in batches])
    assert spread < 0.1 * np.ptp(lengths)  # random batches would spread over ~the whole range
    assert lengths.max() in lengths[batches[0]]
    # shuffled: the batches after the first are not in descending order of length
    firsts = [lengths[b].max() for b in batches[1:]]
    assert firsts != sorted(firsts, reverse=True)


def test_sortish_sampler_is_deterministic_by_seed_and_epoch():
    lengths = _lengths(500)
    a, b = SortishSampler(lengths, 8, seed=5), SortishSampler(lengths, 8, seed=5)
    assert a.batches(2) == b.batches(2)
    assert a.batches(2) != a.batches(3)
    assert a.batches(2) != SortishSampler(lengths, 8, seed=6).batches(2)


def test_sortish_sampler_never_ends_with_a_batch_of_one():
    batches = SortishSampler(list(range(1, 18)), bs=4, seed=0).batches(0)  # 17 = 4*4 + 1
    assert min(len(b) for b in batches) >= 2
    assert sorted(i for b in batches for i in b) == list(range(17))


def test_sorted_batches_are_sorted_by_length_descending():
    lengths = _lengths(101)
    sb = SortedBatches(lengths, bs=10)
    batches = sb.batches()
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(101)) and len(batches) == len(sb) == 11
    assert list(lengths[flat]) == sorted(lengths, reverse=True)


def test_restore_order_returns_outputs_in_input_order():
    lengths = _lengths(37)
    values = torch.arange(37, dtype=torch.float32) * 10
    for batches in (SortedBatches(lengths, 5).batches(), SortishSampler(lengths, 4).batches(0)):
        outputs = [values[b].unsqueeze(1).repeat(1, 3) for b in batches]
        out = restore_order(batches, outputs)
        assert out.shape == (37, 3)
        assert torch.equal(out[:, 0], values)
    with pytest.raises(ValueError):
        restore_order([[0, 1], [1]], [torch.zeros(2), torch.zeros(1)])


def test_pad_batch_right_pads_with_pad_id_and_gives_lengths():
    x, lengths = pad_batch([np.array([5, 6, 7], dtype=np.uint16), [8], np.array([9, 10])], pad_id=1)
    assert x.dtype == torch.int64 and lengths.tolist() == [3, 1, 2]
    assert x.tolist() == [[5, 6, 7], [8, 1, 1], [9, 10, 1]]
    x, lengths = pad_batch([list(range(10, 20)), [3, 4]], pad_id=0, max_len=4)
    assert x.tolist() == [[16, 17, 18, 19], [3, 4, 0, 0]] and lengths.tolist() == [4, 2]


def test_truncate_keeps_first_or_last_tokens():
    assert truncate([1, 2, 3, 4], 2, keep="first") == [1, 2]
    assert truncate([1, 2, 3, 4], 2, keep="last") == [3, 4]
    assert truncate([1, 2], 5) == [1, 2]
    with pytest.raises(ValueError):
        truncate([1], 0)


VOCAB = Vocab(SPECIAL_TOKENS + ["good", "bad", "film", "."])


def test_classification_data_from_labeled_tokenises_and_maps_labels():
    data = LabeledTexts(["Good film.", "bad film", "good"], ["pos", "neg", "pos"], "mem", [1, 2, 3])
    cd = ClassificationData.from_labeled(data, TokenizerConfig(), VOCAB, progress=False)
    assert cd.label_names == ["neg", "pos"] and cd.labels.tolist() == [1, 0, 1]
    assert VOCAB.textify(cd.ids[0]) == ["xxbos", "xxmaj", "good", "film", "."]
    assert cd.lengths().tolist() == [5, 3, 2]
    x, lengths, y = cd.batch([2, 0], pad_id=VOCAB.stoi["xxpad"])
    assert x.shape == (2, 5) and lengths.tolist() == [2, 5] and y.tolist() == [1, 1]
    assert x[0, 2:].tolist() == [VOCAB.stoi["xxpad"]] * 3

    test = LabeledTexts(["bad", "so so"], ["neg", "meh"], "test.csv", [2, 3])
    with pytest.raises(UlmfitError, match=r"'meh' \(first at test\.csv, line 3\)"):
        ClassificationData.from_labeled(test, TokenizerConfig(), VOCAB, label_names=cd.label_names)


def test_classification_data_multi_label_is_multi_hot():
    data = LabeledTexts(["good", "bad", "film"], [["a", "b"], ["b"], []], "mem")
    cd = ClassificationData.from_labeled(data, TokenizerConfig(), VOCAB, progress=False)
    assert cd.multi_label and cd.label_names == ["a", "b"]
    assert cd.labels.dtype == np.float32
    assert cd.labels.tolist() == [[1, 1], [0, 1], [0, 0]]
    assert cd.batch([0, 2], pad_id=1)[2].shape == (2, 2)
    assert len(cd.subset([1, 2])) == 2
