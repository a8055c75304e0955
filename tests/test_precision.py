"""bf16 autocast is chosen by measurement: on where bf16 is faster, off where it is slower."""

import json

import pytest

from ulmfit.io import UlmfitError, cache_root
from ulmfit.train import precision


@pytest.fixture
def fresh(monkeypatch):
    precision._choice.cache_clear()
    monkeypatch.delenv("ULMFIT_BF16", raising=False)
    monkeypatch.setattr(precision, "bf16_supported", lambda: True)
    yield monkeypatch
    precision._choice.cache_clear()


def _measure_as(monkeypatch, speedup):
    calls = []

    def fake(**kw):
        calls.append(1)
        return speedup

    monkeypatch.setattr(precision, "measure_bf16_speedup", fake)
    return calls


def test_bf16_is_off_where_it_measures_slower_than_fp32(fresh):
    _measure_as(fresh, 0.54)  # the 2-core Intel Xeon without AMX of BENCHMARKS.md
    assert precision.bf16_pays() is False
    assert "0.54x" in precision.bf16_reason()


def test_bf16_is_on_where_it_measures_clearly_faster(fresh):
    _measure_as(fresh, 4.2)  # an AMD Zen 5: bf16 matmuls ~4x fp32
    assert precision.bf16_pays() is True


def test_a_small_speedup_is_not_enough_to_switch(fresh):
    _measure_as(fresh, precision.MIN_SPEEDUP - 0.05)
    assert precision.bf16_pays() is False


def test_the_measurement_is_kept_per_machine_so_later_runs_choose_the_same(fresh):
    calls = _measure_as(fresh, 0.6)
    assert precision.bf16_speedup() == pytest.approx(0.6)
    assert precision.bf16_speedup() == pytest.approx(0.6)
    assert len(calls) == 1
    saved = json.loads((cache_root() / precision.PROBE_FILE).read_text())
    assert saved[precision.machine_key()]["speedup"] == pytest.approx(0.6)


def test_a_corrupt_probe_file_is_measured_again_not_a_crash(fresh):
    path = cache_root() / precision.PROBE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{not json")
    calls = _measure_as(fresh, 3.0)
    assert precision.bf16_speedup() == pytest.approx(3.0)
    assert len(calls) == 1
    assert json.loads(path.read_text())[precision.machine_key()]["speedup"] == pytest.approx(3.0)


def test_environment_overrides_the_measurement(fresh):
    calls = _measure_as(fresh, 4.0)
    fresh.setenv("ULMFIT_BF16", "off")
    assert precision.bf16_pays() is False
    fresh.setenv("ULMFIT_BF16", "on")
    _measure_as(fresh, 0.5)
    assert precision.bf16_pays() is True
    assert not calls


def test_a_model_trained_in_bf16_predicts_in_fp32_under_ulmfit_bf16_off_on_any_device(fresh):
    import torch

    trained = {"train": {"bf16": True}}
    assert precision.predicts_in_bf16(trained, torch.device("cuda"))  # a GPU: as trained
    assert not precision.predicts_in_bf16({"train": {"bf16": False}}, torch.device("cuda"))
    fresh.setenv("ULMFIT_BF16", "off")  # the README's way to fp32 predictions: it held on the CPU alone
    assert not precision.predicts_in_bf16(trained, torch.device("cuda"))
    assert not precision.predicts_in_bf16(trained, torch.device("cpu"))


def test_on_needs_a_cpu_that_can_run_bf16(fresh):
    fresh.setattr(precision, "bf16_supported", lambda: False)
    fresh.setenv("ULMFIT_BF16", "on")
    assert precision.bf16_pays() is False


def test_a_bad_environment_value_is_a_clear_error(fresh):
    fresh.setenv("ULMFIT_BF16", "maybe")
    with pytest.raises(UlmfitError, match="ULMFIT_BF16"):
        precision.bf16_pays()


def test_the_real_measurement_gives_a_positive_ratio():
    assert precision.measure_bf16_speedup(rows=64, inner=64, cols=64, reps=1) > 0


def test_the_lm_trainer_follows_the_measured_choice(fresh, tmp_path):
    from ulmfit.model.awd_lstm import preset
    from ulmfit.model.heads import AWDLSTMLanguageModel
    from ulmfit.train.loop import LMTrainConfig, LMTrainer

    model = AWDLSTMLanguageModel(preset("tiny", 50))
    for speedup, want in ((0.5, False), (3.0, True)):
        precision._choice.cache_clear()
        (cache_root() / precision.PROBE_FILE).unlink(missing_ok=True)
        _measure_as(fresh, speedup)
        assert LMTrainer(model, None, None, LMTrainConfig(), tmp_path, None).use_bf16 is want
        assert LMTrainer(model, None, None, LMTrainConfig(bf16=False), tmp_path, None).use_bf16 is False


def test_a_cache_that_cannot_be_written_still_gives_an_answer(fresh):
    def refuse(path, text):
        raise OSError(28, "No space left on device")

    fresh.setattr(precision, "atomic_write_text", refuse)
    calls = _measure_as(fresh, 3.0)
    assert precision.bf16_pays() is True and len(calls) == 1


def test_the_precision_line_says_what_and_why(fresh):
    import torch

    _measure_as(fresh, 0.54)
    cpu = torch.device("cpu")
    assert precision.precision_line(False, True, cpu) == \
        "precision: fp32 (bf16 matmuls only 0.54x as fast as fp32 here; ULMFIT_BF16=on forces bf16)"
    assert precision.precision_line(False, False, cpu) == "precision: fp32 (--no-bf16)"
    assert precision.precision_line(True, True, torch.device("cuda")) == "precision: bf16 autocast"


def test_the_probe_key_tells_apart_machines_with_the_same_generic_model_name(monkeypatch):
    info = "model name\t: Intel(R) Xeon(R) Processor\nflags\t\t: fpu sse avx512f {}avx512_bf16 avx512_fp16\n"
    assert precision.cpu_flags(info.format("")) == ["avx512_bf16", "avx512_fp16", "avx512f"]
    assert precision.cpu_flags(info.format("amx_bf16 amx_tile ")) == ["amx_bf16", "amx_tile", "avx512_bf16",
                                                                       "avx512_fp16", "avx512f"]
    assert precision.cpu_flags("processor\t: 0\n") == []
    monkeypatch.setattr(precision, "cpu_flags", lambda: ["avx512_bf16", "avx512_fp16", "avx512f"])
    without_amx = precision.machine_key()
    monkeypatch.setattr(precision, "cpu_flags", lambda: ["amx_bf16", "amx_tile", "avx512_bf16", "avx512_fp16", "avx512f"])
    assert precision.machine_key() != without_amx
