"""Numbers given on the command line or to the Python API: a bad one is refused by name before
any text is read (not as a traceback after the tokenising, nor accepted to make a useless model)."""

import math

import pytest

from ulmfit.cli import main
from ulmfit.io import UlmfitError


def _refused(argv, capsys) -> str:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("argv,said", [
    (["pretrain", "c.txt", "--out", "o", "--tokenizer", "subword", "--sp-vocab", "2000000000"],
     "--sp-vocab: must be at most 1,000,000"),
    (["corpus", "tokenize", "c.txt", "--out", "o", "--tokenizer", "subword", "--sp-vocab", "2147483648"],
     "--sp-vocab: must be at most 1,000,000"),
    (["pretrain", "c.txt", "--out", "o", "--seed", "-1"], "--seed: must be at least 0"),
    (["finetune-lm", "c.txt", "--out", "o", "--seed", str(2**64)], "--seed: must be at most 9,223,372,036,854,775,807"),
    (["train-classifier", "d.csv", "--out", "o", "--seed", "-1"], "--seed: must be at least 0"),
    (["generate", "The", "--model", "general-en-fwd", "--seed", str(2**64 - 2)], "--seed: must be at most"),
    (["pretrain", "c.txt", "--out", "o", "--max-tokens", "nan"], "--max-tokens: expected a finite number"),
    (["finetune-lm", "c.txt", "--out", "o", "--max-tokens", "inf"], "--max-tokens: expected a finite number"),
    (["pretrain", "c.txt", "--out", "o", "--max-tokens", "0"], "--max-tokens: must be at least 1"),
    (["pretrain", "c.txt", "--out", "o", "--workers", "0"], "--workers: must be at least 1"),
    (["train-classifier", "d.csv", "--out", "o", "--workers", "-1"], "--workers: must be at least 1"),
    (["demo", "--minutes", "nan"], "--minutes: expected a finite number"),
    (["demo", "--minutes", "inf"], "--minutes: expected a finite number"),
    (["demo", "--minutes", "-1"], "--minutes: must be at least 0"),
    (["demo", "--max-train", "-1"], "--max-train: must be at least 1"),
    (["train-classifier", "d.csv", "--out", "o", "--max-train", "0"], "--max-train: must be at least 1"),
    (["lr-find", "c.txt", "--model", "general-en-fwd", "--lr-div", "0"], "--lr-div: must be above 0"),
    (["lr-find", "c.txt", "--model", "general-en-fwd", "--lr-div", "nan"], "--lr-div: expected a finite number"),
    (["lr-find", "c.txt", "--model", "general-en-fwd", "--end-lr", "inf"], "--end-lr: expected a finite number"),
    (["lr-find", "c.txt", "--model", "general-en-fwd", "--start-lr", "-1"], "--start-lr: must be above 0"),
])
def test_a_bad_number_is_refused_by_the_command_line_before_any_work(argv, said, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    err = _refused(argv, capsys)
    assert said in err and "Traceback" not in err, err
    assert not (tmp_path / "o").exists()


def test_an_empty_source_list_is_not_all_the_sources(tmp_path, capsys):
    assert main(["corpus", "build", "general-en", "--sources", " , ", "--out", str(tmp_path / "o")]) == 2
    assert "--sources names no source" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # nothing fetched, nothing built


def test_seeds_outside_what_the_generators_take_are_refused_in_the_configs():
    from ulmfit.train.classify import ClassifierTrainConfig
    from ulmfit.train.loop import LMTrainConfig

    for bad in (-1, 2**63, 2**64, True, 1.5):
        with pytest.raises(UlmfitError, match="LMTrainConfig: seed must"):
            LMTrainConfig(seed=bad)
        with pytest.raises(UlmfitError, match="ClassifierTrainConfig: seed must"):
            ClassifierTrainConfig(seed=bad)
    assert LMTrainConfig(seed=2**63 - 1).seed == 2**63 - 1
    # a run saved with a seed from the clock resumes
    assert ClassifierTrainConfig.from_dict({"seed": 1796686577316}).seed == 1796686577316


def test_a_saved_tokenizer_config_with_a_float_sample_size_still_loads():
    from ulmfit.text.tokenize import TokenizerConfig

    assert TokenizerConfig.from_dict({"kind": "subword", "sp_sample_chars": 5e7}).sp_sample_chars == 50_000_000
    with pytest.raises(UlmfitError, match="sp_sample_chars"):
        TokenizerConfig(sp_sample_chars=5e7 + 0.5)


@pytest.mark.parametrize("settings,said", [
    ({"min_freq": True}, "TokenizerConfig.min_freq must be a whole number"),
    ({"sp_sample_chars": "20000000"}, "TokenizerConfig.sp_sample_chars must be a whole number"),
    ({"sp_vocab_size": 2**31}, "TokenizerConfig.sp_vocab_size must be a whole number from 10 to 1,000,000"),
    ({"max_vocab": 5}, "TokenizerConfig.max_vocab must be a whole number of at least 10"),
])
def test_tokenizer_settings_are_checked_by_name(settings, said):
    from ulmfit.text.tokenize import TokenizerConfig

    with pytest.raises(UlmfitError, match=said):
        TokenizerConfig(**settings)


@pytest.mark.parametrize("call,said", [
    (dict(n_workers=1.5), "n_workers \\(tokeniser processes\\) must be a whole number"),
    (dict(n_workers="3"), "n_workers \\(tokeniser processes\\) must be a whole number"),
    (dict(n_workers=0), "n_workers \\(tokeniser processes\\) must be a whole number of at least 1"),
    (dict(max_valid_tokens="3"), "max_valid_tokens must be a whole number"),
    (dict(max_valid_tokens=0), "max_valid_tokens must be a whole number"),
    (dict(device="bogus"), "not a device PyTorch knows"),
])
def test_pretrain_checks_its_arguments_before_reading_the_corpus(call, said, tmp_path):
    from ulmfit.api import pretrain

    with pytest.raises(UlmfitError, match=said):  # the corpus does not exist: it was never read
        pretrain(tmp_path / "no-such-corpus.txt", tmp_path / "o", progress=False, **call)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("call,said", [
    (dict(drop_mult=-1), "drop_mult"),
    (dict(drop_mult=math.nan), "drop_mult"),
    (dict(max_vocab="30000"), "max_vocab must be a whole number"),
    (dict(device="bogus"), "not a device PyTorch knows"),
    (dict(n_workers=2.0), "n_workers"),
])
def test_finetune_lm_checks_its_arguments_before_reading_the_text(call, said, tmp_path):
    from ulmfit.api import finetune_lm

    with pytest.raises(UlmfitError, match=said):
        finetune_lm("general-en-fwd", tmp_path / "no-such-text.txt", tmp_path / "o", progress=False, **call)
    assert not (tmp_path / "o").exists()


def test_a_drop_mult_is_bounded_by_the_base_models_own_dropouts_not_a_presets(tmp_path):
    from ulmfit.api import finetune_lm

    with pytest.raises(UlmfitError, match="no-such-text.txt"):  # 4.5 passes the early check: the text is next
        finetune_lm("general-en-fwd", tmp_path / "no-such-text.txt", tmp_path / "o", progress=False, drop_mult=4.5)


def test_training_settings_are_checked_before_texts_in_memory_are_used_up(tmp_path):
    from ulmfit.api import finetune_lm, pretrain

    for call in (lambda g: pretrain(g, tmp_path / "o", progress=False, train_cfg={"seed": -1}),
                 lambda g: finetune_lm("general-en-fwd", g, tmp_path / "o", progress=False, train_cfg={"bs": 0})):
        texts = (f"a text {i}" for i in range(100))
        with pytest.raises(UlmfitError):
            call(texts)
        assert next(texts) == "a text 0"  # not read, so not copied into the cache either


@pytest.mark.parametrize("call,said", [
    (dict(valid_frac="0.1"), "valid_frac \\(--valid-frac\\)"),
    (dict(valid_frac=None), "valid_frac \\(--valid-frac\\)"),
    (dict(valid_frac=1.0), "valid_frac \\(--valid-frac\\)"),
    (dict(max_train=1.5), "max_train \\(labeled examples to use\\) must be a whole number"),
    (dict(max_train="100"), "max_train"),
    (dict(max_train=True), "max_train"),
    (dict(max_train=-1), "max_train"),
    (dict(n_workers="3"), "n_workers"),
    (dict(device="bogus"), "not a device PyTorch knows"),
])
def test_train_classifier_checks_its_arguments_before_reading_the_data(call, said, tmp_path):
    from ulmfit.classifier_api import train_classifier

    with pytest.raises(UlmfitError, match=said):
        train_classifier("general-en-fwd", tmp_path / "no-such-data.csv", tmp_path / "o", progress=False, **call)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("call", [dict(minutes=math.nan), dict(minutes=math.inf), dict(minutes="10"),
                                  dict(max_train=-1), dict(lm_epochs=1.5)])
def test_the_demo_refuses_a_bad_budget_before_timing_anything(call, tmp_path):
    from ulmfit.demo import run_demo

    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "keep.txt").write_text("a file the demo would replace with overwrite=True")
    with pytest.raises(UlmfitError):
        run_demo(tmp_path / "d", progress=False, overwrite=True, **call)
    assert (tmp_path / "d" / "keep.txt").exists()  # refused before the folder was cleared
    assert not (tmp_path / "d" / "demo_state.json").exists()


def test_the_lr_range_test_refuses_rates_it_cannot_raise():
    from ulmfit.train.lr_find import lr_find

    for bad, said in ((dict(lr_div=0), "lr_div must be a finite number above 0"),
                      (dict(lr_div=-1.0), "lr_div"), (dict(end_lr=math.inf), "end_lr"),
                      (dict(start_lr=1.0, end_lr=0.1), "the rates go up"), (dict(num=1), "num")):
        with pytest.raises(UlmfitError, match=said):
            lr_find(None, None, progress=False, **bad)  # refused before the model is touched


def test_tokenising_workers_are_capped_at_a_few_per_core(monkeypatch):
    import multiprocessing as mp

    from ulmfit.text import tokenize

    asked = []

    class Refused(Exception):
        pass

    class Ctx:
        def Pool(self, n, *a, **k):  # noqa: N802
            asked.append(n)
            raise Refused

    monkeypatch.setattr(tokenize, "default_workers", lambda: 2)
    monkeypatch.setattr(mp, "get_context", lambda kind: Ctx())
    texts = [f"text number {i} ." for i in range(30)]
    with pytest.raises(Refused):
        list(tokenize.tokenize_parallel(texts, tokenize.TokenizerConfig(), n_workers=10**12, chunk_docs=10,
                                        progress=False))
    assert asked == [8]  # 4 per core, not a trillion
    with pytest.raises(UlmfitError, match="n_workers"):
        list(tokenize.tokenize_parallel(texts, tokenize.TokenizerConfig(), n_workers=1.5, progress=False))


def test_is_real_number_takes_finite_reals_in_range_and_nothing_else():
    import numpy as np

    from ulmfit.io import is_real_number
    for ok in (0, 0.5, 1, np.float32(0.25), np.int64(1), 10**300):
        assert is_real_number(ok, 0), ok
    for bad in (True, False, None, "0.5", math.nan, math.inf, -math.inf, np.float64("nan"), 10**400, 1j, [1]):
        assert not is_real_number(bad), bad
    assert not is_real_number(0, 0, above=True) and is_real_number(1e-300, 0, above=True)
    assert not is_real_number(1, 0, 1, below=True) and is_real_number(1, 0, 1)
    assert not is_real_number(-0.1, 0) and not is_real_number(1.1, None, 1)
