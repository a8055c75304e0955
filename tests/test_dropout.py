"""AWD-LSTM's regularisers behave as the paper describes."""

import torch

from ulmfit.model.awd_lstm import WeightDropLSTM
from ulmfit.model.dropout import EmbeddingDropout, LockedDropout, embedding_dropout


def manual_lstm(layer: WeightDropLSTM, x, w_hh):
    """A step-by-step LSTM using one given hidden-to-hidden matrix for every time step."""
    bs, T, _ = x.shape
    h = torch.zeros(bs, layer.hidden_size)
    c = torch.zeros(bs, layer.hidden_size)
    outs = []
    for t in range(T):
        gates = x[:, t] @ layer.weight_ih.t() + layer.bias_ih + h @ w_hh.t() + layer.bias_hh
        i, f, g, o = gates.chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        outs.append(h)
    return torch.stack(outs, 1)


def zero_state(layer, bs):
    return (torch.zeros(1, bs, layer.hidden_size), torch.zeros(1, bs, layer.hidden_size))


def test_weight_dropout_uses_one_mask_for_all_time_steps():
    torch.manual_seed(0)
    layer = WeightDropLSTM(5, 7, weight_p=0.5).train()
    x = torch.randn(3, 12, 5)
    torch.manual_seed(1)
    dropped = layer.dropped_weight_hh().detach()  # the mask this forward pass will draw
    assert (dropped == 0).float().mean() > 0.3  # it really drops
    torch.manual_seed(1)
    out, _ = layer(x, zero_state(layer, 3))
    expected = manual_lstm(layer, x, dropped)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)


def test_weight_dropout_draws_a_new_mask_each_pass_and_none_in_eval():
    torch.manual_seed(0)
    layer = WeightDropLSTM(5, 7, weight_p=0.5).train()
    x = torch.randn(3, 6, 5)
    a, _ = layer(x, zero_state(layer, 3))
    b, _ = layer(x, zero_state(layer, 3))
    assert not torch.allclose(a, b)
    layer.eval()
    c, _ = layer(x, zero_state(layer, 3))
    d, _ = layer(x, zero_state(layer, 3))
    torch.testing.assert_close(c, d)
    torch.testing.assert_close(c, manual_lstm(layer, x, layer.weight_hh.detach()), atol=1e-5, rtol=1e-4)


def test_weight_dropout_gradient_reaches_the_raw_weight_through_the_mask():
    torch.manual_seed(0)
    layer = WeightDropLSTM(4, 6, weight_p=0.5).train()
    x = torch.randn(2, 5, 4)
    torch.manual_seed(3)
    mask = layer.dropped_weight_hh().detach() != 0
    torch.manual_seed(3)
    out, _ = layer(x, zero_state(layer, 2))
    out.sum().backward()
    g = layer.weight_hh.grad
    assert torch.all(g[~mask] == 0)  # dropped weights get no gradient
    assert g[mask].abs().sum() > 0


def test_locked_dropout_shares_its_mask_across_time():
    torch.manual_seed(0)
    ld = LockedDropout(0.5).train()
    x = torch.ones(4, 20, 8)
    y = ld(x)
    assert torch.all(y == y[:, :1, :])  # same mask at every time step
    assert not torch.all(y[0] == y[1])  # but different per sequence
    vals = set(y.unique().tolist())
    assert vals <= {0.0, 2.0}  # kept units are rescaled by 1/(1-p)
    assert torch.equal(ld.eval()(x), x)


def test_embedding_dropout_drops_whole_words_and_rescales():
    torch.manual_seed(0)
    w = torch.randn(50, 6)
    d = embedding_dropout(w, 0.4, training=True)
    dropped = (d == 0).all(1)
    kept = ~dropped
    assert 5 < dropped.sum() < 35
    torch.testing.assert_close(d[kept], w[kept] / 0.6)
    emb = torch.nn.Embedding(50, 6)
    ed = EmbeddingDropout(emb, 0.4).train()
    ids = torch.tensor([[3, 3, 3, 3]])
    out = ed(ids)
    # one word, one decision: the same id is either dropped everywhere in the batch or nowhere
    assert torch.all(out == out[:, :1])
    assert torch.equal(ed.eval()(ids), emb(ids))
