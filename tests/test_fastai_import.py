"""Import of fastai AWD-LSTM language models: exact weights, fastai's vocabulary quirks, and pickles
that are read without running them. (bench/fastai_import_check.py checks the same against models
that fastai itself built and saved.)"""

import json
import pickle
import random

import pytest
import torch

from ulmfit import checkpoint as ckpt
from ulmfit.api import LanguageModel
from ulmfit.cli import main
from ulmfit.fastai_import import direction_from_name, import_fastai_lm, read_vocab
from ulmfit.io import UlmfitError
from ulmfit.text.tokenize import SPECIAL_TOKENS

# fastai v1's order of the special tokens (the wt103 vocabulary's era); ulmfit's is fastai v2's
V1_SPECIALS = ["xxunk", "xxpad", "xxbos", "xxeos", "xxfld", "xxmaj", "xxup", "xxrep", "xxwrep"]


def fastai_files(lm_dir, folder, *, specials=V1_SPECIALS, fake=3, learner=False, name="lstm_fwd"):
    """A ulmfit LM written the way fastai stores one: its key names, three copies of the tied
    embedding, the raw and the dropped hidden-to-hidden weights, another order of the special
    tokens, and `fake` rows of xxfake padding at the end of the vocabulary."""
    sd = {k: v.float() for k, v in ckpt.load_tensors(lm_dir / "model.safetensors")[0].items()}
    itos = (lm_dir / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1]
    order = [itos.index(t) for t in specials] + list(range(len(SPECIAL_TOKENS), len(itos)))
    emb = sd["encoder.embedding.weight"][order]
    bias = sd["decoder.decoder.bias"][order]
    g = torch.Generator().manual_seed(0)
    emb = torch.cat([emb, torch.randn(fake, emb.shape[1], generator=g)])
    bias = torch.cat([bias, torch.randn(fake, generator=g)])
    fa = {"0.encoder.weight": emb, "0.encoder_dp.emb.weight": emb.clone()}
    n = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("encoder.rnns."))
    for i in range(n):
        p = f"encoder.rnns.{i}."
        fa[f"0.rnns.{i}.weight_hh_l0_raw"] = sd[p + "weight_hh"]
        fa[f"0.rnns.{i}.module.weight_ih_l0"] = sd[p + "weight_ih"]
        fa[f"0.rnns.{i}.module.weight_hh_l0"] = torch.zeros_like(sd[p + "weight_hh"])  # a dropped copy
        fa[f"0.rnns.{i}.module.bias_ih_l0"] = sd[p + "bias_ih"]
        fa[f"0.rnns.{i}.module.bias_hh_l0"] = sd[p + "bias_hh"]
    fa["1.decoder.weight"] = emb.clone()
    fa["1.decoder.bias"] = bias
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"model": fa, "opt": {"state": {}}} if learner else fa, folder / f"{name}.pth")
    fa_itos = [itos[i] for i in order] + ["xxfake"] * fake
    with open(folder / "itos_wt103.pkl", "wb") as f:
        pickle.dump(fa_itos, f)
    return folder


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    """One small language model for the module (its files are only read)."""
    from conftest import make_corpus

    d = tmp_path_factory.mktemp("fastai_import")
    make_corpus(d / "corpus.txt")  # (its token cache: the run's own, see conftest._never_the_users_cache)
    assert main(["pretrain", str(d / "corpus.txt"), "--out", str(d / "lm"), "--preset", "tiny", "--epochs", "1",
                 "--bs", "8", "--bptt", "16", "--quiet", "--workers", "1"]) == 0
    return d / "lm"


def test_an_imported_fastai_model_predicts_exactly_as_the_model_it_was_made_from(tmp_path, tiny_lm, capsys):
    src = fastai_files(tiny_lm, tmp_path / "wt103-fwd")
    capsys.readouterr()
    assert main(["import-fastai", str(src), "--out", str(tmp_path / "imp")]) == 0
    out = capsys.readouterr().out
    assert "reads forwards" in out and "3 padding (xxfake), repeated or unstorable tokens dropped" in out and "finetune-lm --from" in out
    a, b = LanguageModel.load(tiny_lm), LanguageModel.load(tmp_path / "imp")
    text = (tiny_lm.parent / "corpus.txt").read_text().split("\n")[:20]
    # the xxfake rows join the softmax in fastai's model only; ulmfit's vocabulary is the original's
    assert b.vocab.itos == a.vocab.itos
    assert abs(a.perplexity(text) - b.perplexity(text)) < 1e-3 * a.perplexity(text)
    cfg = json.loads((tmp_path / "imp" / "config.json").read_text())
    assert cfg["imported_from"]["format"] == "fastai" and len(cfg["imported_from"]["weights_sha256"]) == 64
    assert cfg["train"]["backwards"] is False and cfg["tokenizer"]["kind"] == "word"


def test_an_imported_model_fine_tunes_and_evaluates(tmp_path, tiny_lm, capsys):
    src = fastai_files(tiny_lm, tmp_path / "models", name="lstm_bwd", learner=True)  # Learner.save's form
    assert main(["import-fastai", str(src / "lstm_bwd.pth"), "--vocab", str(src / "itos_wt103.pkl"),
                 "--out", str(tmp_path / "imp")]) == 0
    assert "reads backwards" in capsys.readouterr().out  # from the file's name
    assert main(["finetune-lm", "--from", str(tmp_path / "imp"), str(tiny_lm.parent / "corpus.txt"), "--out",
                 str(tmp_path / "ft"), "--epochs", "1", "--bs", "8", "--bptt", "16", "--quiet", "--workers", "1",
                 "--backwards"]) == 0
    assert json.loads((tmp_path / "ft" / "config.json").read_text())["train"]["backwards"] is True
    assert main(["lm-eval", "--model", str(tmp_path / "imp"), str(tiny_lm.parent / "corpus.txt"), "--quiet"]) == 0


def test_missing_special_tokens_are_added_and_the_direction_must_be_known(tmp_path, tiny_lm):
    src = fastai_files(tiny_lm, tmp_path / "mine", specials=V1_SPECIALS, fake=0, name="model")
    itos = read_vocab(src / "itos_wt103.pkl")
    with pytest.raises(UlmfitError, match="do not say whether it reads forwards or backwards"):
        import_fastai_lm(src, tmp_path / "x")
    # a vocabulary without xxfld (the rows are renamed: it stands in for a word of fastai's)
    renamed = ["zzzword" if t == "xxfld" else t for t in itos]
    (src / "itos.txt").write_text("\n".join(renamed) + "\n", encoding="utf-8")
    r = import_fastai_lm(src / "model.pth", tmp_path / "x", vocab=src / "itos.txt", backwards=False)
    assert r["added_special_tokens"] == ["xxfld"] and r["vocab_size"] == len(itos) + 1
    assert LanguageModel.load(tmp_path / "x").vocab.itos[: len(SPECIAL_TOKENS)] == SPECIAL_TOKENS


def test_a_vocabulary_pickle_that_would_run_code_is_refused_without_running_it(tmp_path, tiny_lm):
    src = fastai_files(tiny_lm, tmp_path / "wt103-fwd")
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    with open(src / "itos_wt103.pkl", "wb") as f:
        pickle.dump([Payload(), "the"], f)
    with pytest.raises(UlmfitError, match="only a plain list of strings is read"):
        import_fastai_lm(src, tmp_path / "x")
    assert not marker.exists() and not (tmp_path / "x").exists()


def test_a_weights_file_that_is_not_plain_tensors_is_refused(tmp_path, tiny_lm):
    src = fastai_files(tiny_lm, tmp_path / "wt103-fwd")
    pth = src / "lstm_fwd.pth"
    sd = torch.load(pth, weights_only=True)
    torch.save({"model": sd, "callback": random.Random(0)}, pth)  # an object: weights_only refuses it
    with pytest.raises(UlmfitError, match=r"holds more than tensors and plain containers \(it refers to random.Random\)"):
        import_fastai_lm(src, tmp_path / "x")
    encoder_only = {k[2:]: v for k, v in sd.items() if k.startswith("0.")}  # fastai's save_encoder
    torch.save(encoder_only, pth)
    with pytest.raises(UlmfitError, match="holds an encoder alone"):
        import_fastai_lm(src, tmp_path / "x")
    torch.save({k: v[:-1] if k in ("0.encoder.weight", "1.decoder.weight", "1.decoder.bias") else v
                for k, v in sd.items()}, pth)  # one row fewer than the vocabulary
    with pytest.raises(UlmfitError, match="belong to different models"):
        import_fastai_lm(src, tmp_path / "x")
    untied = dict(sd)
    untied["1.decoder.weight"] = untied["1.decoder.weight"] + 1
    torch.save(untied, pth)
    with pytest.raises(UlmfitError, match="not tied"):
        import_fastai_lm(src, tmp_path / "x")
    flat = dict(sd)
    flat["0.rnns.0.weight_hh_l0_raw"] = flat["0.rnns.0.weight_hh_l0_raw"].flatten()
    torch.save(flat, pth)
    with pytest.raises(UlmfitError, match="not a matrix; the file is damaged"):
        import_fastai_lm(src, tmp_path / "x")
    pth.write_bytes(b"not a pickle")
    with pytest.raises(UlmfitError):
        import_fastai_lm(src, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_import_refuses_an_out_folder_that_holds_files(tmp_path, tiny_lm, capsys):
    src = fastai_files(tiny_lm, tmp_path / "wt103-fwd")
    assert main(["import-fastai", str(src), "--out", str(tiny_lm)]) == 2
    assert "already holds files" in capsys.readouterr().err
    (tmp_path / "two").mkdir()
    for name in ("a.pth", "b.pth"):
        (tmp_path / "two" / name).write_bytes(b"")
    assert main(["import-fastai", str(tmp_path / "two"), "--out", str(tmp_path / "y")]) == 2
    assert "holds 2 .pth files" in capsys.readouterr().err


def test_direction_from_file_names():
    from pathlib import Path

    assert direction_from_name(Path("/m/wt103-bwd/lstm_bwd.pth")) is True
    assert direction_from_name(Path("/m/wt103-fwd/lstm_fwd.pth")) is False
    assert direction_from_name(Path("/m/my_lm/model.pth")) is None
    assert direction_from_name(Path("/m/fwd-and-bwd/x.pth")) is None
    assert direction_from_name(Path("/home/alice/backward-compat/lm/model.pth")) is None  # a folder further up
