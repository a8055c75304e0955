"""Import of fastai's AWD-LSTM language models into ulmfit's format (ULMFiT stage 1 from elsewhere).

fastai publishes the paper's WikiText-103 language models (``wt103-fwd``, ``wt103-bwd``: a
``.pth`` state dict and an ``itos_*.pkl`` vocabulary, in ``~/.fastai/models`` once fastai has
downloaded them), and a fastai user may have pretrained or fine-tuned their own (``learn.save``).
The architecture is the same AWD-LSTM as ours, so the weights carry over exactly; what differs
is naming, fastai's three copies of the tied embedding, the order of the special tokens in the
vocabulary, and padding tokens (``xxfake``) that fastai appends to reach a multiple of 8.

Both files are pickles, and a pickle can run code when it is read. Neither is read with plain
``pickle``: the weights go through ``torch.load(weights_only=True)`` (PyTorch's restricted
unpickler, which builds tensors and plain containers only), the vocabulary through an unpickler
that refuses every class and function (a list of strings needs none). The result is an ordinary
ulmfit model directory (safetensors + JSON), so the pickles are read once, here, and never again.
"""

from __future__ import annotations

import io
import os
import pickle
import re
from pathlib import Path

from .io import UlmfitError

LSTM_KEY = re.compile(r"^0\.rnns\.(\d+)\.")


class _NoGlobalsUnpickler(pickle.Unpickler):
    """Reads pickles of plain data (lists, strings, numbers, dicts) and refuses anything else:
    loading a class or function is how a pickle runs code."""

    def find_class(self, module, name):
        raise UlmfitError(f"it refers to {module}.{name}; only a plain list of strings is read from a vocabulary "
                          "pickle (nothing in it is run)")

    def persistent_load(self, pid):
        raise UlmfitError("it refers to outside objects; only a plain list of strings is read")


def read_vocab(path: str | os.PathLike) -> list[str]:
    """fastai's vocabulary (``itos``): a pickled list of strings, or a text file of one token a line."""
    path = Path(path)
    if path.suffix == ".txt":
        try:
            itos = path.read_text(encoding="utf-8").split("\n")
        except UnicodeDecodeError as e:
            raise UlmfitError(f"{path} is not UTF-8 text ({e})") from e
        return itos[:-1] if itos and itos[-1] == "" else itos
    try:
        with open(path, "rb") as f:
            itos = _NoGlobalsUnpickler(io.BytesIO(f.read())).load()
    except UlmfitError as e:
        raise UlmfitError(f"{path}: {e}") from None
    except OSError as e:
        raise UlmfitError(f"{path}: cannot read it ({e.strerror or e})") from e
    except Exception as e:  # truncated, or not a pickle at all
        raise UlmfitError(f"{path} is not a vocabulary pickle ({type(e).__name__}: {e})") from e
    if isinstance(itos, tuple):
        itos = list(itos)
    if not isinstance(itos, list) or not all(isinstance(t, str) for t in itos):
        raise UlmfitError(f"{path} holds a {type(itos).__name__}, not a list of token strings (fastai's itos)")
    return itos


def read_weights(path: str | os.PathLike) -> dict:
    """The state dict of a fastai language model from a ``.pth`` file, without running its pickle."""
    import torch

    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as e:
        raise UlmfitError(f"{path}: cannot read it ({e.strerror or e})") from e
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
        what = f"it refers to {found.group(1)}" if found else type(e).__name__
        hint = ("; fastai's Learner.save keeps the optimizer's state beside the weights: save the model "
                "without it, learn.save(name, with_opt=False), or its weights alone, "
                "torch.save(learn.model.state_dict(), path)") if found and "fastcore" in found.group(1) else ""
        raise UlmfitError(f"{path} holds more than tensors and plain containers ({what}), so it is not read: a "
                          f"pickle of objects can run code when loaded{hint}") from e
    except Exception as e:
        raise UlmfitError(f"{path} is not a PyTorch weights file ({type(e).__name__}: {e})") from e
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):  # learn.save: model + opt
        obj = obj["model"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UlmfitError(f"{path} does not hold a state dict (names -> tensors)")
    return dict(obj)


def _lm_tensors(sd: dict, path: Path) -> tuple:
    """(embedding, decoder bias, [(w_ih, w_hh, b_ih, b_hh) per layer]) of a fastai AWD-LSTM LM."""
    if "0.encoder.weight" not in sd:
        if "encoder.weight" in sd:
            raise UlmfitError(f"{path} holds an encoder alone (fastai's save_encoder), without the decoder a "
                              "language model needs; import the language model itself (learn.save, or the "
                              "wt103 files)")
        raise UlmfitError(f"{path} is not a fastai AWD-LSTM language model (it has no '0.encoder.weight')")
    if any("layers." in k or "_reverse" in k for k in sd):
        raise UlmfitError(f"{path} is a QRNN or bidirectional model; only fastai's AWD-LSTM (LSTM) is imported")
    if "1.decoder.bias" not in sd:
        raise UlmfitError(f"{path} has no decoder ('1.decoder.bias'); import a whole language model")
    for k, v in sd.items():  # the shapes an AWD-LSTM has: matrices and bias vectors
        if k.startswith(("0.encoder", "1.decoder.weight", "0.rnns.")) and "bias" not in k and v.dim() != 2:
            raise UlmfitError(f"{path}: {k} has shape {tuple(v.shape)}, not a matrix; the file is damaged")
        if "bias" in k and v.dim() != 1:
            raise UlmfitError(f"{path}: {k} has shape {tuple(v.shape)}, not a vector; the file is damaged")
    emb = sd["0.encoder.weight"]
    dec = sd.get("1.decoder.weight")
    if dec is not None and (dec.shape != emb.shape or not bool((dec == emb).all())):
        raise UlmfitError(f"{path}: its decoder is not tied to its embedding; ulmfit's AWD-LSTM ties them")
    n = 1 + max((int(m.group(1)) for k in sd if (m := LSTM_KEY.match(k))), default=-1)
    if n < 1:
        raise UlmfitError(f"{path} has no LSTM layers ('0.rnns.N....')")
    layers = []
    for i in range(n):
        p = f"0.rnns.{i}."
        w_hh = sd.get(p + "weight_hh_l0_raw", sd.get(p + "module.weight_hh_l0"))  # the raw one: before dropout
        try:
            layers.append((sd[p + "module.weight_ih_l0"], w_hh, sd[p + "module.bias_ih_l0"],
                           sd[p + "module.bias_hh_l0"]))
        except KeyError as e:
            raise UlmfitError(f"{path}: LSTM layer {i} lacks {e.args[0]!r}") from None
        if w_hh is None:
            raise UlmfitError(f"{path}: LSTM layer {i} lacks its hidden-to-hidden weights")
    return emb, sd["1.decoder.bias"], layers


def find_files(src: str | os.PathLike, vocab: str | os.PathLike | None) -> tuple[Path, Path]:
    """(weights, vocabulary): given both, or a folder with one ``.pth`` and one ``.pkl`` (fastai's
    model folders, e.g. ``~/.fastai/models/wt103-fwd``)."""
    src = Path(src)
    if src.is_dir():
        pths = sorted(src.glob("*.pth"))
        if len(pths) != 1:
            raise UlmfitError(f"{src} holds {len(pths)} .pth files; give the weights file itself")
        src = pths[0]
        if vocab is None:
            pkls = sorted(src.parent.glob("*.pkl"))
            if len(pkls) != 1:
                raise UlmfitError(f"{src.parent} holds {len(pkls)} .pkl files; give the vocabulary with --vocab")
            vocab = pkls[0]
    elif not src.exists():
        raise UlmfitError(f"{src}: no such file or folder")
    if vocab is None:
        raise UlmfitError(f"give the vocabulary (fastai's itos .pkl) of {src} with --vocab")
    if not Path(vocab).is_file():
        raise UlmfitError(f"{vocab}: no such file")
    return src, Path(vocab)


def direction_from_name(path: Path) -> bool | None:
    """True for a name that says backward (wt103-bwd, lstm_bwd.pth), False for forward, else None.
    Only the file's name and its folder's count (fastai's layout), not folders further up."""
    words = set(re.split(r"[^a-z]+", f"{path.parent.name} {path.name}".lower()))
    bwd, fwd = bool(words & {"bwd", "backward", "backwards"}), bool(words & {"fwd", "forward", "forwards"})
    return None if bwd == fwd else bwd


def import_fastai_lm(src, out, *, vocab=None, backwards: bool | None = None, overwrite: bool = False) -> dict:
    """Convert a fastai AWD-LSTM language model into a ulmfit model directory `out`, which
    `finetune-lm --from`, `lm-eval`, `generate` and `pretrain --init-from` then read like any other.

    src: the weights (``.pth``) or a fastai model folder; vocab: its ``itos`` (``.pkl``, or a text
    file of one token a line); backwards: whether it reads right to left (None: from the file names,
    e.g. ``wt103-bwd``; refused when they do not say). Returns what was imported."""
    import torch

    from . import checkpoint as ckpt
    from .api import require_free_out
    from .data.cache import _sha256_file
    from .model.awd_lstm import AWDLSTMConfig
    from .model.heads import AWDLSTMLanguageModel
    from .text.tokenize import SPECIAL_TOKENS, TokenizerConfig
    from .text.vocab import Vocab

    out = Path(out)
    require_free_out(out, overwrite, "pass --overwrite to replace them, or choose another --out")
    weights_p, vocab_p = find_files(src, vocab)
    if backwards is None:
        backwards = direction_from_name(weights_p)
        if backwards is None:
            backwards = direction_from_name(weights_p.parent / vocab_p.name)
        if backwards is None:
            raise UlmfitError(f"the names of {weights_p} do not say whether it reads forwards or backwards; "
                              "say it with --direction fwd or --direction bwd")
    itos = read_vocab(vocab_p)
    emb, bias, layers = _lm_tensors(read_weights(weights_p), weights_p)
    if emb.shape[0] != len(itos) or bias.shape[0] != len(itos):
        raise UlmfitError(f"{vocab_p} has {len(itos)} tokens but {weights_p} has {emb.shape[0]} embedding rows: "
                          "they belong to different models")
    # ulmfit's vocabulary starts with its special tokens in its own order; fastai's order differs
    # between versions, and fastai pads with repeated 'xxfake' tokens that no text produces
    first, dropped = {}, []
    for i, t in enumerate(itos):
        if t in first or t == "xxfake" or not t or "\n" in t or "\r" in t:  # padding, a repeat, or unstorable
            dropped.append(t)
        else:
            first[t] = i
    missing = [t for t in SPECIAL_TOKENS if t not in first]
    new_itos = SPECIAL_TOKENS + [t for t in first if t not in SPECIAL_TOKENS]
    rows = [first.get(t, -1) for t in new_itos]
    emb32, bias32 = emb.float(), bias.float()
    src_rows = torch.tensor([max(r, 0) for r in rows])
    new_emb, new_bias = emb32[src_rows].clone(), bias32[src_rows].clone()
    for j, r in enumerate(rows):  # a special token fastai's vocabulary lacks: the average word, as fastai does
        if r < 0:
            new_emb[j], new_bias[j] = emb32.mean(0), bias32.mean()

    emb_size, hidden = emb.shape[1], layers[0][1].shape[1]
    arch = AWDLSTMConfig(vocab_size=len(new_itos), emb_size=emb_size, hidden_size=hidden, n_layers=len(layers))
    with torch.random.fork_rng(devices=[]):  # building the model draws initial weights: not the caller's
        model = AWDLSTMLanguageModel(arch)
    tensors = {"encoder.embedding.weight": new_emb, "decoder.decoder.bias": new_bias}
    for i, (w_ih, w_hh, b_ih, b_hh) in enumerate(layers):
        p = f"encoder.rnns.{i}."
        tensors.update({p + "weight_ih": w_ih.float(), p + "weight_hh": w_hh.float(), p + "bias_ih": b_ih.float(),
                        p + "bias_hh": b_hh.float()})
    ckpt.load_weights(model, tensors, weights_p)  # names and shapes checked against the architecture
    model.eval()
    info = {"format": "fastai", "weights": str(weights_p.resolve()), "weights_sha256": _sha256_file(weights_p),
            "vocab": str(vocab_p.resolve()), "vocab_sha256": _sha256_file(vocab_p),
            "dropped_tokens": len(dropped), "added_special_tokens": missing}
    if overwrite:
        ckpt.remove_run_files(out)
    tok = TokenizerConfig(kind="word", max_vocab=max(60000, len(new_itos)))
    ckpt.save_model(out, model, vocab=Vocab(new_itos), tok_cfg=tok, train={"backwards": backwards},
                    extra={"imported_from": info, "tokenizer_rules": None})  # fastai's tokens: not ours, unknown
    return {"out": str(out), "vocab_size": len(new_itos), "emb_size": emb_size, "hidden_size": hidden,
            "n_layers": len(layers), "backwards": backwards, "dropped_tokens": len(dropped),
            "added_special_tokens": missing,
            "parameters": sum(t.numel() for t in ckpt._unique_state_dict(model).values())}
