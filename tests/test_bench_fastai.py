"""bench/fastai_compare.py starts fastai from ulmfit's pretrained weights: the conversion must put
every tensor under fastai's key in fastai's order (fastai loads them by position), and the report
must compare the medians of each library's rows. (The comparison itself needs fastai in its own
environment and trains models; it is not run here. `run` checks on the real model that fastai
reproduces ulmfit's logits exactly before it times anything.)"""

import json

import pytest
import torch

from ulmfit.model.awd_lstm import preset
from ulmfit.model.heads import AWDLSTMLanguageModel


@pytest.fixture(scope="module")
def fc(load_bench):
    return load_bench("fastai_compare")


# the key order of fastai 2.8's get_language_model(AWD_LSTM, vocab, config={..., "n_layers": 2})
FASTAI_KEYS_2_LAYERS = [
    "0.encoder.weight", "0.encoder_dp.emb.weight",
    "0.rnns.0.weight_hh_l0_raw", "0.rnns.0.module.weight_ih_l0", "0.rnns.0.module.bias_ih_l0",
    "0.rnns.0.module.bias_hh_l0",
    "0.rnns.1.weight_hh_l0_raw", "0.rnns.1.module.weight_ih_l0", "0.rnns.1.module.bias_ih_l0",
    "0.rnns.1.module.bias_hh_l0",
    "1.decoder.weight", "1.decoder.bias",
]


def test_conversion_keeps_every_tensor_in_fastai_order(fc):
    m = AWDLSTMLanguageModel(preset("tiny", 50))
    sd = m.state_dict()
    fa = fc.to_fastai_lm_state(sd)
    assert list(fa) == FASTAI_KEYS_2_LAYERS
    emb = sd["encoder.embedding.weight"]
    for k in ("0.encoder.weight", "0.encoder_dp.emb.weight", "1.decoder.weight"):
        assert torch.equal(fa[k], emb)  # the tied embedding in all three places
    assert torch.equal(fa["1.decoder.bias"], sd["decoder.decoder.bias"])
    for i in range(2):
        assert torch.equal(fa[f"0.rnns.{i}.weight_hh_l0_raw"], sd[f"encoder.rnns.{i}.weight_hh"])
        assert torch.equal(fa[f"0.rnns.{i}.module.weight_ih_l0"], sd[f"encoder.rnns.{i}.weight_ih"])
        assert torch.equal(fa[f"0.rnns.{i}.module.bias_ih_l0"], sd[f"encoder.rnns.{i}.bias_ih"])
        assert torch.equal(fa[f"0.rnns.{i}.module.bias_hh_l0"], sd[f"encoder.rnns.{i}.bias_hh"])
    # the rest of the ulmfit state is the tied embedding under other names (the saved file omits them)
    mapped = {"encoder.embedding.weight", "decoder.decoder.bias"} | {
        f"encoder.rnns.{i}.{w}" for i in range(2) for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    for k in set(sd) - mapped:
        assert torch.equal(sd[k], emb), k


def test_report_gives_medians_and_the_ratio(fc, tmp_path, monkeypatch, capsys):
    rows = []
    for variant, lm_s, acc in [("ulmfit", 10, 0.70), ("ulmfit", 30, 0.72), ("ulmfit", 20, 0.74),
                               ("fastai", 50, 0.71), ("fastai", 40, 0.69), ("fastai", 60, 0.73)]:
        rows.append({"variant": variant, "commit": "abc", "cpu": "cpu", "n_train": 100, "n_test": 50,
                     "lm_s": lm_s, "clf_s": 1.0, "predict_s": 1.0, "wall_s": 1.0, "peak_rss_mb": 1.0,
                     "lm_perplexity": 1.0, "vocab": 10, "accuracy": acc})
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setattr(fc, "RESULTS", path)
    assert fc.main(["report"]) == 0
    out = capsys.readouterr().out
    lm = next(line for line in out.splitlines() if line.startswith("| LM fine-tuning"))
    assert "| 20.0 | 50.0 | 2.50x |" in lm  # medians 20 and 50
    acc = next(line for line in out.splitlines() if line.startswith("| test accuracy"))
    assert "72.00%" in acc and "71.00%" in acc


def test_token_comparison_counts_texts_tokens_and_kinds_of_difference(load_bench):
    ft = load_bench("fastai_tokens")
    ours = [["xxbos", "xxmaj", "i", "saw", "it"], ["xxbos", "ok"], ["xxbos", "2000"]]
    theirs = [["xxbos", "i", "saw", "it"], ["xxbos", "ok"], ["xxbos", "2", "xxrep", "3", "0"]]
    res = ft.compare(ours, theirs, top=5)
    assert (res["docs_identical"], res["tokens"], res["tokens_differing"]) == (1, 9, 1 + 4)
    assert dict(res["most_common"]) == {"'xxmaj' -> fastai ''": 1, "'2000' -> fastai '2 xxrep 3 0'": 1}


def test_the_fastai_scripts_say_how_to_make_fastai_s_environment_when_it_is_missing(load_bench, tmp_path):
    import sys

    env = load_bench("fastai_env")
    with pytest.raises(SystemExit, match="no such Python(.|\n)*pip install fastai"):
        env.check_fastai_python(str(tmp_path / "nowhere" / "python"))
    try:
        import fastai  # noqa: F401
        return  # this environment has fastai: the second case cannot be made here
    except ImportError:
        pass
    with pytest.raises(SystemExit, match="fastai does not import there(.|\n)*pip install fastai"):
        env.check_fastai_python(sys.executable)
