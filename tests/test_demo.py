"""`ulmfit demo` end to end, offline: a tiny LM and a small prepared dataset stand in for the real ones."""

import json

from test_classifier import write_task

from ulmfit.api import pretrain
from ulmfit.demo import run_demo
from ulmfit.train.loop import LMTrainConfig


def test_demo_runs_all_stages_and_reports_beside_a_baseline(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    write_task(data / "train.csv", 240, 0)
    write_task(data / "test.csv", 80, 1)
    pretrain(data / "train.csv", tmp_path / "lm", preset="tiny", progress=False, n_workers=1, fmt="csv",
             column="text", train_cfg=LMTrainConfig(epochs=1, bs=8, bptt=20, lr=1e-2, lr_div=1.0))
    summary = run_demo(tmp_path / "out", "rotten-tomatoes", lm=tmp_path / "lm", data_dir=data, progress=False)
    out = capsys.readouterr().out
    for n in range(1, 6):
        assert f"[{n}/5]" in out
    assert "TF-IDF + logistic regression" in out and "ulmfit predict --model" in out
    assert 0.0 <= summary["ulmfit_accuracy"] <= 1.0 and summary["tfidf_accuracy"] > 0.8
    saved = json.loads((tmp_path / "out" / "demo_summary.json").read_text())
    assert saved["n_test"] == 80 and (tmp_path / "out" / "classifier" / "model.safetensors").exists()
