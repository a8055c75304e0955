"""Model directories: exact round trips, clear errors on bad files, and never a pickle."""

import json
import os
import pickle

import pytest
import torch

from ulmfit import checkpoint as ckpt
from ulmfit.io import UlmfitError
from ulmfit.model.awd_lstm import preset
from ulmfit.model.heads import AWDLSTMLanguageModel
from ulmfit.text.tokenize import SPECIAL_TOKENS, TokenizerConfig
from ulmfit.text.vocab import Vocab


def saved_model(tmp_path):
    vocab = Vocab(SPECIAL_TOKENS + [f"w{i}" for i in range(41)])
    torch.manual_seed(0)
    m = AWDLSTMLanguageModel(preset("tiny", len(vocab)))
    out = ckpt.save_model(tmp_path / "lm", m, vocab=vocab, tok_cfg=TokenizerConfig(), step=7)
    return m, out


def test_round_trip_gives_bit_identical_logits(tmp_path):
    m, out = saved_model(tmp_path)
    loaded, cfg, vocab = ckpt.load_model(out)
    ids = torch.randint(0, 50, (3, 17))
    m.eval()
    with torch.no_grad():
        assert torch.equal(m(ids), loaded(ids))
    assert cfg["step"] == 7 and len(vocab) == 50
    assert loaded.decoder.decoder.weight is loaded.encoder.embedding.weight  # tying survives the round trip


def test_files_are_plain_json_text_and_safetensors(tmp_path):
    _, out = saved_model(tmp_path)
    assert sorted(os.listdir(out)) == ["config.json", "model.safetensors", "vocab.txt"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["format"] == "ulmfit" and cfg["arch"]["emb_size"] == 32 and "ulmfit_version" in cfg
    assert (out / "vocab.txt").read_text().split("\n")[:2] == ["xxunk", "xxpad"]


def test_corrupted_weights_give_a_clear_error(tmp_path):
    _, out = saved_model(tmp_path)
    data = (out / "model.safetensors").read_bytes()
    (out / "model.safetensors").write_bytes(data[:100])  # truncated
    with pytest.raises(UlmfitError, match="corrupted"):
        ckpt.load_model(out)
    (out / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(UlmfitError, match="corrupted"):
        ckpt.load_model(out)


def test_foreign_or_mismatched_checkpoints_are_refused(tmp_path):
    with pytest.raises(UlmfitError, match="no config.json"):
        ckpt.load_model(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(UlmfitError, match="foreign"):
        ckpt.load_model(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(UlmfitError, match="not valid JSON"):
        ckpt.load_model(tmp_path)
    _, out = saved_model(tmp_path / "x")
    cfg = json.loads((out / "config.json").read_text())
    cfg["arch"]["hidden_size"] = 99
    (out / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UlmfitError, match="shape"):
        ckpt.load_model(out)


@pytest.mark.parametrize("section,key,value,says", [
    ("arch", "hidden_size", "big", "hidden_size must be an integer"),
    ("arch", "hidden_size", -5, "hidden_size must be at least 1"),
    ("arch", "emb_size", 256.5, "emb_size must be an integer"),
    ("arch", "input_p", "x", "input_p must be a number"),
    ("arch", "weight_p", 1.5, "weight_p is a dropout probability"),
    ("arch", "pad_id", 10 ** 9, "pad_id 1000000000 is not a token id"),
    ("arch", "tie_weights", "yes", "tie_weights must be true or false"),
    (None, "backwards", "yes", "'backwards' must be true or false"),
    ("train", "backwards", 1, "'train.backwards' must be true or false"),
])
def test_a_hand_edited_config_names_the_bad_setting(tmp_path, section, key, value, says):
    _, out = saved_model(tmp_path)
    cfg = json.loads((out / "config.json").read_text())
    cfg.setdefault("train", {})
    (cfg[section] if section else cfg)[key] = value
    (out / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UlmfitError, match=says):
        ckpt.load_model(out)


class Bomb:
    def __reduce__(self):
        return (os.system, ("touch PICKLE_BOMB_WENT_OFF",))


def test_a_pickle_in_the_folder_is_never_executed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, out = saved_model(tmp_path)
    for name in ("pytorch_model.bin", "model.pt", "train_state.pt", "optimizer.pkl"):
        (out / name).write_bytes(pickle.dumps(Bomb()))
    monkeypatch.setattr(pickle, "load", lambda *a, **k: pytest.fail("pickle.load called"))
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("pickle.loads called"))
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load called"))
    ckpt.load_model(out)
    assert not (tmp_path / "PICKLE_BOMB_WENT_OFF").exists()


def test_fp16_export_loads_as_fp32(tmp_path):
    vocab = Vocab(SPECIAL_TOKENS + [f"w{i}" for i in range(41)])
    m = AWDLSTMLanguageModel(preset("tiny", len(vocab)))
    out = ckpt.save_model(tmp_path / "half", m, vocab=vocab, tok_cfg=TokenizerConfig(), dtype=torch.float16)
    loaded, _, _ = ckpt.load_model(out)
    assert loaded.encoder.embedding.weight.dtype == torch.float32
    torch.testing.assert_close(loaded.encoder.embedding.weight, m.encoder.embedding.weight, atol=1e-3, rtol=1e-3)


def test_classifier_head_settings_are_checked_too():
    from ulmfit.model.classifier import HeadConfig

    with pytest.raises(ValueError, match="n_classes must be an integer"):
        HeadConfig.from_dict({"n_classes": "3"})
    with pytest.raises(ValueError, match="head_p is a dropout probability"):
        HeadConfig.from_dict({"n_classes": 3, "head_p": -0.1})
    assert HeadConfig.from_dict({"n_classes": 3}).max_len == 1400


def _edit_config(out, edit):
    cfg = json.loads((out / "config.json").read_text())
    edit(cfg)
    (out / "config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize("change,says", [
    ("vocab", "vocab.txt is not the vocabulary that model.safetensors was trained with"),
    ("direction", r"reading direction in config.json \(backward\) is not the one"),
    ("lower", "tokenizer settings of config.json are not those"),
])
def test_files_mixed_from_two_models_are_refused(tmp_path, change, says):
    """Same shapes, so nothing else would notice: a vocabulary of the same size from another model,
    a direction or a tokenizer setting edited in config.json would give wrong predictions silently."""
    m, out = saved_model(tmp_path)
    ckpt.load_model(out)  # as saved: fine
    if change == "vocab":  # another model's vocabulary of the same size: two words swapped
        words = (out / "vocab.txt").read_text().split("\n")
        words[-2], words[-3] = words[-3], words[-2]
        (out / "vocab.txt").write_text("\n".join(words))
    elif change == "direction":
        _edit_config(out, lambda c: c["train"].__setitem__("backwards", True))
    else:
        _edit_config(out, lambda c: c["tokenizer"].__setitem__("lower", False))
    with pytest.raises(UlmfitError, match=says):
        ckpt.load_model(out)


def test_a_subword_model_without_its_sentencepiece_file_says_it_is_missing(tmp_path):
    vocab = Vocab(SPECIAL_TOKENS + [f"w{i}" for i in range(41)])
    (tmp_path / "pieces.model").write_bytes(b"a SentencePiece model's bytes")
    out = ckpt.save_model(tmp_path / "lm", AWDLSTMLanguageModel(preset("tiny", len(vocab))), vocab=vocab,
                          tok_cfg=TokenizerConfig(kind="subword"), sp_model=str(tmp_path / "pieces.model"))
    ckpt.load_model(out)
    (out / "spm.model").unlink()
    with pytest.raises(UlmfitError, match="spm.model is missing"):  # it used to say "not the model ... mixed"
        ckpt.load_model(out)


def test_weights_saved_without_the_record_still_load(tmp_path):
    """Weights written before the record existed (the shipped models' among them) are not checked."""
    m, out = saved_model(tmp_path)
    tensors, meta = ckpt.load_tensors(out / "model.safetensors")
    assert meta["backwards"] == "false" and len(meta["vocab_sha256"]) == 64
    ckpt.save_tensors(out / "model.safetensors", tensors, {"format": "ulmfit", "step": "7"})
    _edit_config(out, lambda c: c["tokenizer"].__setitem__("lower", False))
    ckpt.load_model(out)


def test_a_backward_model_records_its_direction(tmp_path):
    vocab = Vocab(SPECIAL_TOKENS + [f"w{i}" for i in range(41)])
    m = AWDLSTMLanguageModel(preset("tiny", len(vocab)))
    out = ckpt.save_model(tmp_path / "bwd", m, vocab=vocab, tok_cfg=TokenizerConfig(), train={"backwards": True})
    assert ckpt.load_tensors(out / "model.safetensors")[1]["backwards"] == "true"
    _, cfg, _ = ckpt.load_model(out)
    _edit_config(out, lambda c: c["train"].__setitem__("backwards", False))
    with pytest.raises(UlmfitError, match=r"direction in config.json \(forward\)"):
        ckpt.load_model(out)


def test_a_classifier_refuses_labels_reordered_or_renamed(tmp_path):
    from ulmfit.model.classifier import AWDLSTMClassifier, HeadConfig

    vocab = Vocab(SPECIAL_TOKENS + [f"w{i}" for i in range(41)])
    arch, head = preset("tiny", len(vocab)), HeadConfig(n_classes=3)
    model = AWDLSTMClassifier(arch, head)
    out = ckpt.save_classifier(tmp_path / "clf", model.state_dict(), arch=arch.to_dict(), head=head.to_dict(),
                               vocab=vocab, tok_cfg=TokenizerConfig(), labels=["neg", "neu", "pos"],
                               extra={"backwards": False})
    ckpt.load_classifier(out)
    _edit_config(out, lambda c: c.__setitem__("labels", ["pos", "neu", "neg"]))
    with pytest.raises(UlmfitError, match=r"labels of config.json \(names or order\)"):
        ckpt.load_classifier(out)
    _edit_config(out, lambda c: c.__setitem__("labels", ["neg", "neu", "pos"]))
    _edit_config(out, lambda c: c.__setitem__("backwards", True))  # what predict reads
    with pytest.raises(UlmfitError, match="reading direction"):
        ckpt.load_classifier(out)


def test_files_written_in_an_atomic_group_replace_their_targets_together_or_not_at_all(tmp_path):
    from ulmfit.io import atomic_group, atomic_write_text

    for name in ("a", "b"):
        (tmp_path / name).write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_group():
            atomic_write_text(tmp_path / "a", "new")
            with atomic_group():  # nested: joins the outer group
                atomic_write_text(tmp_path / "b", "new")
            assert (tmp_path / "a").read_text() == "old"  # nothing in place before the group ends
            raise RuntimeError("the disk filled while writing the third file")
    assert [(tmp_path / n).read_text() for n in "ab"] == ["old", "old"] and sorted(os.listdir(tmp_path)) == ["a", "b"]
    with atomic_group():
        atomic_write_text(tmp_path / "a", "new")
        atomic_write_text(tmp_path / "b", "new")
    assert [(tmp_path / n).read_text() for n in "ab"] == ["new", "new"] and sorted(os.listdir(tmp_path)) == ["a", "b"]


def test_an_atomic_group_holds_the_files_of_its_own_thread_only(tmp_path):
    import threading

    from ulmfit.io import atomic_group, atomic_write_text

    written = threading.Event()

    def other():
        atomic_write_text(tmp_path / "report.json", "{}")  # another thread, outside any group
        written.set()

    with pytest.raises(RuntimeError):
        with atomic_group():
            atomic_write_text(tmp_path / "weights", "new")
            t = threading.Thread(target=other)
            t.start()
            t.join()
            assert written.is_set() and (tmp_path / "report.json").exists()  # in place at once
            raise RuntimeError("the group fails")
    assert sorted(os.listdir(tmp_path)) == ["report.json"]


def test_a_file_is_synced_to_disk_before_it_takes_its_name(tmp_path, monkeypatch):
    import os

    from ulmfit import io

    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: events.append("fsync") or real_fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b: events.append("rename") or real_replace(a, b))
    io.atomic_write_text(tmp_path / "f.json", "{}")
    assert events == ["fsync", "rename"] and (tmp_path / "f.json").read_text() == "{}"
    events.clear()
    with io.atomic_path(tmp_path / "w.safetensors") as tmp:  # written by another library (safetensors, a plot)
        with open(tmp, "wb") as f:
            f.write(b"weights")
    assert events == ["fsync", "rename"] and (tmp_path / "w.safetensors").read_bytes() == b"weights"
