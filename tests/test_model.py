"""The AWD-LSTM language model: tying, the chunked loss, state carrying, bf16, learning."""

import math

import pytest
import torch

import ulmfit.model.loss as loss_mod
from ulmfit.model.awd_lstm import preset
from ulmfit.model.heads import AWDLSTMLanguageModel
from ulmfit.model.loss import linear_cross_entropy


def tiny_lm(vocab=50, **kw):
    torch.manual_seed(0)
    return AWDLSTMLanguageModel(preset("tiny", vocab, **kw))


def test_weight_tying_shares_one_tensor():
    m = tiny_lm()
    assert m.decoder.decoder.weight is m.encoder.embedding.weight
    names = [n for n, _ in m.named_parameters()]
    assert sum("weight" in n and ("embedding" in n or "decoder.decoder" in n) for n in names) == 1
    untied = tiny_lm(tie_weights=False)
    assert untied.decoder.decoder.weight is not untied.encoder.embedding.weight


@pytest.mark.parametrize("chunk_rows", [1, 7, 1000])
def test_chunked_loss_equals_full_softmax_cross_entropy(monkeypatch, chunk_rows):
    torch.manual_seed(0)
    V = 37
    monkeypatch.setattr(loss_mod, "CHUNK_ELEMENTS", chunk_rows * V)
    h = torch.randn(4, 9, 8, requires_grad=True)
    w = torch.randn(V, 8, requires_grad=True)
    b = torch.randn(V, requires_grad=True)
    t = torch.randint(0, V, (4, 9))
    loss, correct = linear_cross_entropy(h, w, b, t, count_correct=True)
    (2 * loss).backward()
    grads = [x.grad.clone() for x in (h, w, b)]
    for x in (h, w, b):
        x.grad = None
    logits = h @ w.t() + b
    ref = torch.nn.functional.cross_entropy(logits.reshape(-1, V), t.reshape(-1))
    (2 * ref).backward()
    torch.testing.assert_close(loss, ref)
    assert int(correct) == int((logits.argmax(-1) == t).sum())
    for g, x in zip(grads, (h, w, b)):
        torch.testing.assert_close(g, x.grad, atol=1e-6, rtol=1e-5)


def test_hidden_state_is_carried_between_batches_and_reset_forgets_it():
    m = tiny_lm().eval()
    ids = torch.randint(0, 50, (2, 12))
    with torch.no_grad():
        whole = m(ids)
        m.reset()
        first, second = m(ids[:, :5]), m(ids[:, 5:])
        torch.testing.assert_close(torch.cat([first, second], 1), whole, atol=1e-5, rtol=1e-5)
        m.reset()
        fresh = m(ids[:, 5:])
        assert not torch.allclose(fresh, second)
    assert all(not h.requires_grad for h, c in m.encoder.state)  # carried state is detached


def test_bf16_autocast_loss_is_close_to_fp32():
    from ulmfit.train.precision import bf16_supported

    if not bf16_supported():  # e.g. a CPU without AVX-512: oneDNN builds no bf16 LSTM, the library stays fp32
        pytest.skip("this CPU has no bf16 kernels; the library trains in fp32 here (precision.bf16_supported)")
    m = tiny_lm(200).eval()
    ids = torch.randint(0, 200, (4, 30))
    with torch.no_grad():
        _, ce32, _ = m.loss(ids[:, :-1], ids[:, 1:])
        m.reset()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            _, ce16, _ = m.loss(ids[:, :-1], ids[:, 1:])
    assert abs(float(ce32) - float(ce16)) < 0.05 * float(ce32)
    assert abs(float(ce32) - math.log(200)) < 0.5  # an untrained model is near uniform


def test_a_tiny_lm_overfits_a_tiny_corpus():
    torch.manual_seed(0)
    V = 40
    seq = torch.randint(9, V, (1, 60)).repeat(8, 1)  # the same 60-token text in 8 streams
    m = AWDLSTMLanguageModel(preset("tiny", V, drop_mult=0.0)).train()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    for _ in range(150):
        m.reset()
        loss, ce, _ = m.loss(seq[:, :-1], seq[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(ce) < 0.2 * math.log(V)
