"""The AWD-LSTM encoder (Merity et al. 2017), the language model under ULMFiT.

An embedding (with embedding dropout and locked input dropout) feeds a stack of LSTM layers whose
hidden-to-hidden matrices are weight-dropped (DropConnect); locked dropout sits between layers.
The last layer's output size equals the embedding size so the decoder can share the embedding
matrix (weight tying). The hidden state is carried from one batch to the next (the streams are
contiguous text) and detached, so back-propagation is truncated at the batch boundary.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from .dropout import EmbeddingDropout, LockedDropout, embedding_dropout


def check_settings(obj, positive=(), rates=()) -> None:
    """Every field of a settings dataclass has its annotated type (a config.json edited by hand, or
    written by something else, fails here with the field's name instead of deep inside PyTorch);
    `positive` fields are at least 1, `rates` (dropout probabilities) lie in [0, 1)."""
    for f in fields(obj):
        v, kind = getattr(obj, f.name), str(f.type)
        if kind == "bool":
            ok = isinstance(v, bool)
        elif kind == "int":
            ok = isinstance(v, int) and not isinstance(v, bool)
        elif kind == "float":
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and v == v
        else:
            continue
        if not ok:
            want = {"int": "an integer", "float": "a number", "bool": "true or false"}[kind]
            raise ValueError(f"{f.name} must be {want}, not {v!r}")
    for name in positive:
        if getattr(obj, name) < 1:
            raise ValueError(f"{name} must be at least 1, not {getattr(obj, name)}")
    for name in rates:
        if not 0 <= getattr(obj, name) < 1:
            raise ValueError(f"{name} is a dropout probability, from 0 up to (not including) 1, not {getattr(obj, name)}")


# Far above any AWD-LSTM (the paper's: 400 / 1152 / 3 layers, a 60k vocabulary), far below sizes that
# would take a machine's memory before a model's weights are checked against its config.
ARCH_LIMITS = {"vocab_size": 1 << 24, "emb_size": 1 << 16, "hidden_size": 1 << 16, "n_layers": 64}


def too_much_dropout(drop_mult: float, top: float) -> str:
    """The message for a drop_mult that scales the largest dropout probability `top` to 1 or more."""
    return (f"drop_mult must be below {1 / top:.4g} here (it scales every dropout probability, and the largest, "
            f"{top:g}, would be {top * drop_mult:.3g}: a probability must stay below 1), not {drop_mult:g}")


@dataclass
class AWDLSTMConfig:
    """Architecture and regularisation. Dropout defaults are the published LM values
    (input 0.25, output 0.1, weight 0.2, embedding 0.02, hidden 0.15), all scaled by drop_mult."""

    vocab_size: int
    emb_size: int = 400
    hidden_size: int = 1152
    n_layers: int = 3
    pad_id: int = 1
    input_p: float = 0.25
    hidden_p: float = 0.15
    weight_p: float = 0.2
    embed_p: float = 0.02
    output_p: float = 0.1
    drop_mult: float = 1.0
    tie_weights: bool = True

    def __post_init__(self):
        check_settings(self, positive=("vocab_size", "emb_size", "hidden_size", "n_layers"),
                       rates=("input_p", "hidden_p", "weight_p", "embed_p", "output_p"))
        for name, most in ARCH_LIMITS.items():  # a config.json from elsewhere: 10**6 layers took 16 GB before
            if getattr(self, name) > most:       # its weights were even read
                v = str(getattr(self, name))
                v = v if len(v) <= 20 else f"{v[:3]}... ({len(v)} digits)"
                raise ValueError(f"{name} {v} is beyond what ulmfit builds (at most {most:,})")
        if self.drop_mult < 0:
            raise ValueError(f"drop_mult must be at least 0, not {self.drop_mult}")
        top = max(self.input_p, self.hidden_p, self.weight_p, self.embed_p, self.output_p)
        if top * self.drop_mult >= 1:
            raise ValueError(too_much_dropout(self.drop_mult, top))
        if not 0 <= self.pad_id < self.vocab_size:
            raise ValueError(f"pad_id {self.pad_id} is not a token id of a {self.vocab_size}-token vocabulary")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "AWDLSTMConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown architecture settings: {sorted(unknown)}")
        return cls(**d)

    def dropout(self, name: str) -> float:
        return getattr(self, name) * self.drop_mult


# Named sizes. "paper" is ULMFiT's AWD-LSTM (fastai's 1152 hidden units). "small" trains about
# 4x faster per token on a CPU and is the size a ~100M-token corpus can feed. "tiny" is for tests.
PRESETS: dict[str, dict] = {
    "paper": dict(emb_size=400, hidden_size=1152, n_layers=3),
    "small": dict(emb_size=256, hidden_size=768, n_layers=3),
    "tiny": dict(emb_size=32, hidden_size=64, n_layers=2),
}


def preset(name: str, vocab_size: int, **overrides) -> AWDLSTMConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return AWDLSTMConfig(vocab_size=vocab_size, **{**PRESETS[name], **overrides})


class WeightDropLSTM(nn.Module):
    """One LSTM layer with DropConnect on its hidden-to-hidden matrix U = [U_i, U_f, U_c, U_o].

    The dropped matrix is computed once per forward call and handed to PyTorch's fused LSTM
    kernel, so every time step of the call uses the same mask (the paper's requirement) and
    the regularisation costs one elementwise op on a 4h x h matrix per batch, not per step.
    """

    def __init__(self, input_size: int, hidden_size: int, weight_p: float):
        super().__init__()
        self.input_size, self.hidden_size, self.weight_p = input_size, hidden_size, weight_p
        k = hidden_size ** -0.5
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size).uniform_(-k, k))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size).uniform_(-k, k))
        self.bias_ih = nn.Parameter(torch.empty(4 * hidden_size).uniform_(-k, k))
        self.bias_hh = nn.Parameter(torch.empty(4 * hidden_size).uniform_(-k, k))

    def dropped_weight_hh(self) -> torch.Tensor:
        return F.dropout(self.weight_hh, self.weight_p, self.training)

    def prepare(self, dtype: torch.dtype | None = None) -> list[torch.Tensor]:
        """The parameters of one forward call: the hidden matrix weight-dropped (a new mask per
        call of this method) and everything cast to `dtype` when given."""
        params = [self.weight_ih, self.dropped_weight_hh(), self.bias_ih, self.bias_hh]
        if dtype is not None and params[0].dtype != dtype:
            params = [p.to(dtype) for p in params]
        return params

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor], params=None):
        """x: [batch, time, input]; state: (h, c) each [1, batch, hidden]. Returns (out, (h, c)).

        `params` from `prepare()` lets several calls share one mask (and one cast copy)."""
        if params is None:
            params = self.prepare(x.dtype)  # autocast does not reach the functional lstm's weights
        elif x.dtype != params[0].dtype:
            x = x.to(params[0].dtype)
        if state[0].dtype != params[0].dtype:
            state = (state[0].to(params[0].dtype), state[1].to(params[0].dtype))
        out, h, c = torch.lstm(x, state, params, True, 1, 0.0, self.training, False, True)
        return out, (h, c)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, weight_p={self.weight_p}"


class AWDLSTMEncoder(nn.Module):
    """Embedding -> [LSTM (weight-dropped) -> locked dropout] x n_layers, with state carried over.

    ``forward`` returns the last layer's output before and after its dropout is applied by the
    head, i.e. (raw, per-layer raw outputs); heads apply their own output dropout.
    """

    def __init__(self, cfg: AWDLSTMConfig):
        super().__init__()
        self.cfg = cfg
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.emb_size, padding_idx=cfg.pad_id)
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        with torch.no_grad():
            self.embedding.weight[cfg.pad_id].zero_()
        self.embedding_dp = EmbeddingDropout(self.embedding, cfg.dropout("embed_p"))
        self.input_dp = LockedDropout(cfg.dropout("input_p"))
        sizes = [cfg.emb_size] + [cfg.hidden_size] * (cfg.n_layers - 1) + [cfg.emb_size]
        self.rnns = nn.ModuleList(
            WeightDropLSTM(sizes[i], sizes[i + 1], cfg.dropout("weight_p")) for i in range(cfg.n_layers)
        )
        self.hidden_dps = nn.ModuleList(LockedDropout(cfg.dropout("hidden_p")) for _ in range(cfg.n_layers - 1))
        self.state: list[tuple[torch.Tensor, torch.Tensor]] | None = None

    def reset(self) -> None:
        """Forget the carried hidden state (start of a new stream / document batch)."""
        self.state = None

    def _zero_state(self, bs: int, ref: torch.Tensor):
        return [
            (ref.new_zeros(1, bs, rnn.hidden_size), ref.new_zeros(1, bs, rnn.hidden_size)) for rnn in self.rnns
        ]

    def shared_weights(self, dtype: torch.dtype | None = None) -> dict:
        """A holder for dropout-masked (and, given `dtype`, cast) weights that several forward
        calls share: the chunks of one BPT3C batch use one embedding-dropout and one weight-drop
        mask, as one long sequence would, and the autograd graph holds one copy of the weights
        instead of one per chunk. The locked (input, between-layer) dropout masks are drawn again
        for each chunk, as in fastai's classifier. Filled by the first call that uses it (so the random draws come
        in the same order as without it), with gradients when they are enabled here."""
        return {"grad": torch.is_grad_enabled(), "dtype": dtype, "emb": None, "rnns": [None] * len(self.rnns)}

    def forward(self, ids: torch.Tensor, state=None, keep_state: bool = True, weights: dict | None = None,
                return_state: bool = False):
        """ids: [batch, time] -> (last layer output [batch, time, emb], all layers' outputs), and with
        ``return_state`` the new state as a third item (what a caller on several threads reads: the
        ``last_state`` attribute is shared by them all).

        With ``state=None`` the carried state is used (zeros on the first call or after a batch
        size change); the new state is stored detached when ``keep_state``. ``weights`` (from
        `shared_weights`) replaces this call's own dropout masks.
        """
        bs = ids.size(0)
        if weights is None:
            emb = self.input_dp(self.embedding_dp(ids))
        else:
            if weights["emb"] is None:
                with torch.set_grad_enabled(weights["grad"]):
                    weights["emb"] = embedding_dropout(self.embedding.weight, self.embedding_dp.p, self.training)
            emb = self.input_dp(F.embedding(ids, weights["emb"], self.embedding.padding_idx))
        if state is None:
            state = self.state
            if state is None or state[0][0].size(1) != bs:
                state = self._zero_state(bs, self.embedding.weight)
        x, new_state, outputs = emb, [], []
        for i, rnn in enumerate(self.rnns):
            params = None
            if weights is not None:
                if weights["rnns"][i] is None:
                    with torch.set_grad_enabled(weights["grad"]):
                        weights["rnns"][i] = rnn.prepare(weights["dtype"])
                params = weights["rnns"][i]
            x, s = rnn(x, state[i], params)
            new_state.append(s)
            outputs.append(x)
            if i < len(self.rnns) - 1:
                x = self.hidden_dps[i](x)
        if keep_state:
            self.state = [(h.detach().float(), c.detach().float()) for h, c in new_state]
        self.last_state = new_state
        return (x, outputs, new_state) if return_state else (x, outputs)
