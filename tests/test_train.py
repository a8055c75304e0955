"""Training language models end to end: learning, interruption and exact resume, fine-tuning."""

import json
import math
import os
import re
import signal
import sys
from pathlib import Path

import pytest
import torch

from ulmfit import checkpoint as ckpt
from ulmfit.api import LanguageModel, finetune_lm, pretrain
from ulmfit.io import TrainingInterrupted, UlmfitError
from ulmfit.train.finetune import freeze_to, lm_layer_groups, transfer_vocab
from ulmfit.train.loop import LMTrainConfig, LMTrainer

FAST = dict(bs=8, bptt=16, lr=1e-2, lr_div=1.0, save_every_minutes=1e9)


def cfg(**kw):
    return LMTrainConfig(**{**FAST, **kw})


def test_pretraining_learns_the_corpus(tmp_path, corpus):
    res = pretrain(corpus, tmp_path / "lm", preset="tiny", train_cfg=cfg(epochs=3), progress=False, n_workers=1)
    lm = LanguageModel.load(tmp_path / "lm")
    V = len(lm.vocab)
    assert res["valid_loss"] < 0.45 * math.log(V)  # far below a uniform guess over the vocabulary
    history = json.loads((tmp_path / "lm" / "config.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[-1]["valid_loss"] < history[0]["valid_loss"]
    lines = (tmp_path / "lm" / "metrics.jsonl").read_text().strip().split("\n")
    assert any("valid_perplexity" in json.loads(l) for l in lines)


def interrupt_at(monkeypatch, step):
    real = LMTrainer.set_lrs

    def set_lrs(self, *a):
        if self.step == step:
            raise KeyboardInterrupt
        return real(self, *a)

    monkeypatch.setattr(LMTrainer, "set_lrs", set_lrs)


def interrupt_after_backward(monkeypatch, step, exc=KeyboardInterrupt):
    """Ctrl-C inside a batch: its dropout masks are drawn and its gradients computed, no update made
    (or, with `exc`, another failure at that point, such as a gradient all-reduce that lost its partner)."""
    from ulmfit.train import distributed

    real = distributed.average_gradients

    def average_gradients(params, *a, **k):
        if trainer_step["n"] == step:
            raise exc
        trainer_step["n"] += 1
        return real(params, *a, **k)

    trainer_step = {"n": 0}
    monkeypatch.setattr(distributed, "average_gradients", average_gradients)


def signal_inside_optimizer_step(monkeypatch, step, signum=signal.SIGINT):
    """A real Ctrl-C (or SIGTERM) that arrives while the optimizer updates the weights of step `step`
    (counted from 0): Python runs the handler before the step's bookkeeping."""
    real, n = torch.optim.AdamW.step, {"n": 0}

    def step_fn(self, *a, **k):
        out = real(self, *a, **k)
        if n["n"] == step:
            os.kill(os.getpid(), signum)
        n["n"] += 1
        return out

    monkeypatch.setattr(torch.optim.AdamW, "step", step_fn)


def sigterm_at_epoch_record(monkeypatch, epoch):
    """A SIGTERM while the end of epoch `epoch` is being recorded (its validation logged, its best
    weights and checkpoint not yet saved)."""
    real = LMTrainer.log

    def log(self, rec):
        out = real(self, rec)
        if rec.get("epoch") == epoch and "valid_loss" in rec:
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    monkeypatch.setattr(LMTrainer, "log", log)


@pytest.mark.parametrize("where", ["before the batch", "inside the batch", "inside the optimizer step"])
def test_an_interrupted_run_resumes_where_it_stopped_and_ends_as_if_never_stopped(tmp_path, corpus, monkeypatch, where):
    c = cfg(epochs=2)
    pretrain(corpus, tmp_path / "full", preset="tiny", train_cfg=c, progress=False, n_workers=1)
    with monkeypatch.context() as m:
        if where == "inside the optimizer step":  # the update is made: the run stops right after it
            signal_inside_optimizer_step(m, 22)
        else:
            (interrupt_at if where == "before the batch" else interrupt_after_backward)(m, 23)
        with pytest.raises(TrainingInterrupted, match="interrupted at step 23"):
            pretrain(corpus, tmp_path / "cut", preset="tiny", train_cfg=c, progress=False, n_workers=1)
    state = json.loads((tmp_path / "cut" / "train_state.json").read_text())
    assert state["step"] == 23 and state["epoch"] == 0 and state["batch"] == 23
    adam = ckpt.load_tensors(tmp_path / "cut" / ckpt.STATE_T)[0]
    assert all(int(v) == 23 for k, v in adam.items() if k.endswith(".step"))  # the moments agree with the step
    with pytest.raises(UlmfitError, match="--resume"):  # never silently overwrite a run
        pretrain(corpus, tmp_path / "cut", preset="tiny", train_cfg=c, progress=False, n_workers=1)
    pretrain(corpus, tmp_path / "cut", progress=False, resume=True, n_workers=1)
    a, _, _ = ckpt.load_model(tmp_path / "full")
    b, _, _ = ckpt.load_model(tmp_path / "cut")
    full = json.loads((tmp_path / "full" / "train_state.json").read_text())
    cut = json.loads((tmp_path / "cut" / "train_state.json").read_text())
    assert cut["step"] == full["step"] and cut["tokens"] == full["tokens"]
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-4, msg=n)
    # the interrupted epoch reports the running train loss of all its batches, not only of those after resuming
    assert [h["train_loss"] for h in cut["history"]] == pytest.approx([h["train_loss"] for h in full["history"]],
                                                                      rel=1e-4)


def test_an_interrupt_inside_the_first_batch_of_an_epoch_resumes_as_if_never_stopped(tmp_path, corpus, monkeypatch):
    """The hidden state is None at an epoch's first batch, and the batch's RNG state was restored only
    when it was not: a Ctrl-C in that batch's forward pass saved the RNG its dropout masks had advanced,
    and the resumed run drew other masks (a notebook's interrupt just after an epoch ended)."""
    c = cfg(epochs=2)
    pretrain(corpus, tmp_path / "full", preset="tiny", train_cfg=c, progress=False, n_workers=1)
    per_epoch = json.loads((tmp_path / "full" / "train_state.json").read_text())["history"][0]["step"]
    with monkeypatch.context() as m:
        interrupt_after_backward(m, per_epoch)  # masks drawn, gradients computed, no update
        with pytest.raises(TrainingInterrupted, match=f"interrupted at step {per_epoch}"):
            pretrain(corpus, tmp_path / "cut", preset="tiny", train_cfg=c, progress=False, n_workers=1)
    state = json.loads((tmp_path / "cut" / "train_state.json").read_text())
    assert (state["epoch"], state["batch"]) == (1, 0)
    pretrain(corpus, tmp_path / "cut", progress=False, resume=True, n_workers=1)
    a, _, _ = ckpt.load_model(tmp_path / "full")
    b, _, _ = ckpt.load_model(tmp_path / "cut")
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-4, msg=n)


def test_an_interrupt_during_a_validation_inside_the_epoch_saves_the_training_streams_state(
        tmp_path, corpus, monkeypatch):
    from ulmfit.train import loop

    seen = {}

    def evaluate_lm(model, *a, **k):  # Ctrl-C while the validation stream runs through the model
        seen["training"] = [(h.clone(), c.clone()) for h, c in model.encoder.state]
        model.encoder.state = [(torch.full_like(h, 7.0), torch.full_like(c, 7.0)) for h, c in model.encoder.state]
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "evaluate_lm", evaluate_lm)
    with pytest.raises(TrainingInterrupted, match="interrupted at step 10"):
        pretrain(corpus, tmp_path / "lm", preset="tiny", train_cfg=cfg(epochs=1, eval_every=10), progress=False,
                 n_workers=1)
    saved = ckpt.load_tensors(tmp_path / "lm" / ckpt.STATE_T)[0]
    for i, (h, c) in enumerate(seen["training"]):
        torch.testing.assert_close(saved[f"hidden.{i}.h"], h)
        torch.testing.assert_close(saved[f"hidden.{i}.c"], c)


def test_a_learning_curve_point_cut_short_by_an_interrupt_is_validated_first_on_resume(tmp_path, corpus, monkeypatch):
    from ulmfit.train import loop

    c = cfg(epochs=1, eval_every=10)
    pretrain(corpus, tmp_path / "full", preset="tiny", train_cfg=c, progress=False, n_workers=1)
    real, calls = loop.evaluate_lm, {"n": 0}

    def evaluate_lm(*a, **k):  # Ctrl-C during the first eval_every validation (step 10)
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt
        return real(*a, **k)

    with monkeypatch.context() as m:
        m.setattr(loop, "evaluate_lm", evaluate_lm)
        with pytest.raises(TrainingInterrupted, match="interrupted at step 10"):
            pretrain(corpus, tmp_path / "cut", preset="tiny", train_cfg=c, progress=False, n_workers=1)
    assert json.loads((tmp_path / "cut" / ckpt.STATE_J).read_text())["eval_pending"] is True
    pretrain(corpus, tmp_path / "cut", progress=False, resume=True, n_workers=1)

    def curve(run):
        state = json.loads((run / ckpt.STATE_J).read_text())
        logged = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
        points = [r for r in logged if "valid_loss" in r and r["epoch"] == 0]  # eval_every points, not the epoch's
        assert [r["step"] for r in points] == [r["step"] for r in state["curve"]]
        return [(r["step"], r["tokens"], r["valid_loss"]) for r in state["curve"]]

    full, cut = curve(tmp_path / "full"), curve(tmp_path / "cut")
    assert full[0][0] == 10 and [p[:2] for p in cut] == [p[:2] for p in full]
    assert [p[2] for p in cut] == pytest.approx([p[2] for p in full], rel=1e-4)


def test_a_run_that_stopped_early_is_finished_and_resuming_it_is_refused(tmp_path, corpus, monkeypatch):
    from ulmfit.train import loop

    losses = iter([3.0, 3.5, 4.0, 4.5])  # the validation loss rises after the first epoch
    monkeypatch.setattr(loop, "evaluate_lm", lambda *a, **k: (lambda v: {"loss": v, "perplexity": math.exp(v),
                                                                          "accuracy": 0.1, "tokens": 100})(next(losses)))
    res = pretrain(corpus, tmp_path / "lm", preset="tiny", train_cfg=cfg(epochs=6, patience=1), progress=False,
                   n_workers=1)
    assert res["restored_best_epoch"] == 1
    before = {p.name: p.read_bytes() for p in (tmp_path / "lm").iterdir()}
    for extend in (None, {"epochs": 10}):  # resumed, it used to train another epoch and stop again
        with pytest.raises(UlmfitError, match=r"stopped early after epoch 2 .* kept epoch 1's weights.*nothing to "
                                              r"resume.*--init-from"):
            pretrain(corpus, tmp_path / "lm", resume=True, extend=extend, progress=False, n_workers=1)
    assert {p.name: p.read_bytes() for p in (tmp_path / "lm").iterdir()} == before


@pytest.mark.parametrize("stage", ["pretrain", "finetune"])
def test_a_run_started_under_earlier_tokeniser_rules_resumes_on_its_cached_tokens(tmp_path, corpus, monkeypatch,
                                                                                   capsys, stage):
    """The rules that turn text into tokens change now and then (RULES_VERSION): an interrupted run
    resumes on the tokens it started with, from the cache, or says how its weights can go on."""
    import shutil

    from ulmfit import api
    from ulmfit.api import finetune_lm
    from ulmfit.data import cache

    c = cfg(epochs=1)
    if stage == "finetune":
        pretrain(corpus, tmp_path / "base", preset="tiny", train_cfg=c, progress=False, n_workers=1)
    run = (lambda **kw: pretrain(corpus, tmp_path / "run", preset="tiny", train_cfg=c, n_workers=1, **kw)) \
        if stage == "pretrain" else \
        (lambda **kw: finetune_lm(tmp_path / "base", corpus, tmp_path / "run", train_cfg=c, n_workers=1, **kw))
    with monkeypatch.context() as m:
        interrupt_at(m, 5)
        with pytest.raises(TrainingInterrupted):
            run(progress=False)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["data"]
    assert saved["rules"] == cache.RULES_VERSION
    newer = cache.RULES_VERSION + 1
    monkeypatch.setattr(cache, "RULES_VERSION", newer)  # an upgrade of ulmfit changes the rules
    monkeypatch.setattr(api, "RULES_VERSION", newer)
    capsys.readouterr()
    run(resume=True, progress=True)
    err = capsys.readouterr().err
    assert f"made by the tokeniser rules of an earlier ulmfit, version {newer - 1}" in err
    assert json.loads((tmp_path / "run" / ckpt.STATE_J).read_text())["epoch"] == 1
    # once more, from the interruption, with the cache cleared: refused, with the way on
    shutil.rmtree(tmp_path / "run")
    shutil.rmtree(cache.cache_root() / "corpora")
    monkeypatch.setattr(cache, "RULES_VERSION", newer - 1)
    monkeypatch.setattr(api, "RULES_VERSION", newer - 1)
    with monkeypatch.context() as m:
        interrupt_at(m, 5)
        with pytest.raises(TrainingInterrupted):
            run(progress=False)
    monkeypatch.setattr(cache, "RULES_VERSION", newer)
    monkeypatch.setattr(api, "RULES_VERSION", newer)
    shutil.rmtree(cache.cache_root() / "corpora")
    how = "--init-from" if stage == "pretrain" else "--from"
    with pytest.raises(UlmfitError, match=rf"cannot resume .*run: its tokens were made by the tokeniser rules of an "
                                          rf"earlier ulmfit \(version {newer - 1}; .*{how} .*run --out NEW"):
        run(resume=True, progress=False)


def test_a_fine_tuning_whose_base_model_moved_resumes_given_its_new_place(tmp_path, corpus, monkeypatch, capsys):
    import shutil

    from ulmfit.api import finetune_lm

    pretrain(corpus, tmp_path / "base", preset="tiny", train_cfg=cfg(epochs=1), progress=False, n_workers=1)
    with monkeypatch.context() as m:
        interrupt_at(m, 5)
        with pytest.raises(TrainingInterrupted):
            finetune_lm(tmp_path / "base", corpus, tmp_path / "ft", train_cfg=cfg(epochs=1), progress=False,
                        n_workers=1)
    shutil.move(tmp_path / "base", tmp_path / "moved")  # another machine, another folder
    with pytest.raises(UlmfitError, match=r"the base model it started from, .*base, is not there any more; give its "
                                          r"new place: `ulmfit finetune-lm --from NEW_PLACE --resume"):
        finetune_lm(None, corpus, tmp_path / "ft", resume=True, progress=False, n_workers=1)
    capsys.readouterr()
    finetune_lm(tmp_path / "moved", corpus, tmp_path / "ft", resume=True, n_workers=1)
    out = capsys.readouterr().out
    assert "the base model is not at" in out and "ignored" not in out
    assert json.loads((tmp_path / "ft" / ckpt.STATE_J).read_text())["epoch"] == 1


def test_only_process_0_resumes_from_the_saved_hidden_state(tmp_path, corpus, monkeypatch):
    # process 0 alone saves, so its carried state is the only one on disk: the other processes,
    # which read other rows of the text, start their first resumed batch from a zero state
    with monkeypatch.context() as m:
        interrupt_at(m, 7)
        with pytest.raises(TrainingInterrupted, match="interrupted at step 7"):
            pretrain(corpus, tmp_path / "lm", preset="tiny", train_cfg=cfg(epochs=1), progress=False, n_workers=1)
    got = {}
    real = LMTrainer.resume

    def resume(self):
        self.main = main
        real(self)
        got[main] = self._resume_hidden
        raise KeyboardInterrupt  # stop there: nothing more to check

    monkeypatch.setattr(LMTrainer, "resume", resume)
    for main in (True, False):
        with pytest.raises(KeyboardInterrupt):
            pretrain(corpus, tmp_path / "lm", progress=False, resume=True, n_workers=1)
    assert got[True] is not None and got[False] is None


def test_a_run_whose_data_moved_resumes_from_its_new_place_and_only_on_the_same_data(tmp_path, corpus, monkeypatch):
    import shutil

    c = cfg(epochs=2)
    pretrain(corpus, tmp_path / "full", preset="tiny", train_cfg=c, progress=False, n_workers=1)
    text = tmp_path / "text.txt"
    shutil.copy(corpus, text)
    with monkeypatch.context() as m:
        interrupt_at(m, 23)
        with pytest.raises(TrainingInterrupted, match="interrupted at step 23"):
            pretrain(text, tmp_path / "cut", preset="tiny", train_cfg=c, progress=False, n_workers=1)
    moved = tmp_path / "elsewhere" / "text.txt"
    moved.parent.mkdir()
    text.rename(moved)
    with pytest.raises(UlmfitError, match="not there any more.*ulmfit pretrain NEW_PATH --resume"):
        pretrain(None, tmp_path / "cut", progress=False, resume=True, n_workers=1)
    other = tmp_path / "other.txt"
    other.write_text(moved.read_text() + "one more document for a different corpus\n")
    with pytest.raises(UlmfitError, match="not the same data"):
        pretrain(other, tmp_path / "cut", progress=False, resume=True, n_workers=1)
    reordered = tmp_path / "reordered.txt"  # the same documents, so the same counts, in another order
    reordered.write_text("".join(reversed(moved.read_text().splitlines(keepends=True))))
    with pytest.raises(UlmfitError, match="other tokens, or the documents in another order"):
        pretrain(reordered, tmp_path / "cut", progress=False, resume=True, n_workers=1)
    pretrain(moved, tmp_path / "cut", progress=False, resume=True, n_workers=1)
    a, _, _ = ckpt.load_model(tmp_path / "full")
    b, saved, _ = ckpt.load_model(tmp_path / "cut")
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-4, msg=n)
    assert saved["data"]["source"] == str(moved.resolve())  # the next resume finds it there


def test_resume_refuses_a_directory_without_a_run(tmp_path, corpus):
    with pytest.raises(UlmfitError, match="cannot resume"):
        pretrain(corpus, tmp_path / "nothing", resume=True, progress=False)


def test_a_finished_run_can_be_extended_with_more_epochs(tmp_path, corpus):
    pretrain(corpus, tmp_path / "lm", preset="tiny", train_cfg=cfg(epochs=1), progress=False, n_workers=1)
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "lm").iterdir()}
    with pytest.raises(UlmfitError, match=r"finished run \(1 epoch, .*--epochs above 1"):  # said, not "saved"
        pretrain(corpus, tmp_path / "lm", progress=False, resume=True, n_workers=1)
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "lm").iterdir()} == before
    pretrain(corpus, tmp_path / "lm", progress=False, resume=True, extend={"epochs": 2}, n_workers=1)
    history = json.loads((tmp_path / "lm" / "config.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2]


def test_max_tokens_stops_a_budgeted_run(tmp_path, corpus):
    res = pretrain(corpus, tmp_path / "lm", preset="tiny", train_cfg=cfg(epochs=5, max_tokens=2000),
                   progress=False, n_workers=1)
    assert 2000 <= res["tokens"] < 2000 + 8 * 40


def test_vocab_transfer_keeps_known_vectors_and_starts_new_words_at_the_mean():
    old = torch.randn(5, 3)
    w, b, found = transfer_vocab(old, ["a", "b", "c", "d", "e"], ["c", "new", "a"], torch.arange(5.0))
    assert found == 2
    torch.testing.assert_close(w[0], old[2])
    torch.testing.assert_close(w[2], old[0])
    torch.testing.assert_close(w[1], old.mean(0))
    assert b.tolist() == [2.0, 2.0, 0.0]


def test_freezing_trains_only_the_top_group_and_leaves_the_rest_bit_identical(tmp_path, corpus):
    pretrain(corpus, tmp_path / "lm", preset="tiny", train_cfg=cfg(epochs=1), progress=False, n_workers=1)
    model, _, _ = ckpt.load_model(tmp_path / "lm")
    groups = lm_layer_groups(model)
    assert len(groups) == 3  # two LSTM layers, then embedding + decoder
    assert any(p is model.encoder.embedding.weight for p in groups[-1])
    before = [[p.detach().clone() for p in g] for g in groups]
    freeze_to(groups, -1)
    opt = torch.optim.AdamW([p for g in groups for p in g], lr=1e-2, weight_decay=0.1)
    model.train()
    ids = torch.randint(0, len(model.encoder.embedding.weight), (4, 12))
    loss, _, _ = model.loss(ids[:, :-1], ids[:, 1:])
    loss.backward()
    opt.step()
    for g, b in zip(groups[:-1], before[:-1]):
        assert all(torch.equal(p, q) for p, q in zip(g, b))
    assert not all(torch.equal(p, q) for p, q in zip(groups[-1], before[-1]))


def test_finetuning_adapts_a_pretrained_model_to_new_text(tmp_path, corpus):
    pretrain(corpus, tmp_path / "lm", preset="tiny", train_cfg=cfg(epochs=2), progress=False, n_workers=1)
    target = tmp_path / "target.txt"
    lines = [f"The film was wonderful and the zorblat was great . I loved the zorblat {i % 7} times ."
             for i in range(150)]
    base_words = LanguageModel.load(tmp_path / "lm").vocab.itos
    rare_known = next(w for w in base_words if w.isalpha() and w.islower() and not w.startswith("xx")
                      and w not in " ".join(lines).lower())
    lines.append(f"Once : {rare_known} and qwxzyv .")  # each word once in the whole target text
    target.write_text("\n".join(lines))
    res = finetune_lm(tmp_path / "lm", target, tmp_path / "ft", progress=False, n_workers=1, keep_base_vocab="no",
                      train_cfg=cfg(freeze_epochs=1, freeze_lr=2e-2, epochs=2, lr_div=2.6))
    cfg_json = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert cfg_json["vocab_transfer"]["new"] > 0 and cfg_json["vocab_transfer"]["known"] > 9
    first = json.loads((tmp_path / "ft" / "metrics.jsonl").read_text().split("\n")[0])
    assert first["step"] == 0  # perplexity before fine-tuning is recorded
    assert res["valid_perplexity"] < 0.5 * first["valid_perplexity"]
    ft = LanguageModel.load(tmp_path / "ft")
    assert "zorblat" in ft.vocab
    # a word the pretrained model knows keeps its id even when the target text has it once (100
    # labeled snippets have few words 3 times); a new word needs min_freq occurrences
    assert rare_known in ft.vocab and "qwxzyv" not in ft.vocab
    absent = next(w for w in base_words if w.isalpha() and w.islower() and not w.startswith("xx")
                  and w not in " ".join(lines).lower() and w != rare_known)
    assert absent not in ft.vocab and cfg_json["keep_base_vocab"] == "no"


def test_finetuning_on_text_the_word_tokeniser_cannot_split_warns_before_training(tmp_path, corpus):
    pretrain(corpus, tmp_path / "lm", preset="tiny", train_cfg=cfg(epochs=1), progress=False, n_workers=1)
    target = tmp_path / "zh.txt"  # Chinese, no spaces: one "word" a line, each seen once
    target.write_text("\n".join(f"这部电影很好看演员的表演非常出色第{i}次" for i in range(60)), encoding="utf-8")
    with pytest.warns(UserWarning, match=r"\d+% of the words of the target text are xxunk.*--tokenizer subword"):
        finetune_lm(tmp_path / "lm", target, tmp_path / "ft", progress=False, n_workers=1,
                    train_cfg=cfg(epochs=1))


def test_small_target_text_keeps_the_whole_pretrained_vocabulary(tmp_path, corpus):
    """A few hundred labeled snippets lack most words their test texts use: "auto" keeps every
    pretrained word (starting from its pretrained vector), the target's own words first."""
    pretrain(corpus, tmp_path / "lm", preset="tiny", train_cfg=cfg(epochs=1), progress=False, n_workers=1)
    base = LanguageModel.load(tmp_path / "lm")
    target = tmp_path / "target.txt"
    lines = [f"The film was wonderful and the zorblat was great {i % 5} ." for i in range(60)]
    target.write_text("\n".join(lines))
    absent = next(w for w in base.vocab.itos if w.isalpha() and w.islower() and not w.startswith("xx")
                  and w not in " ".join(lines).lower())
    finetune_lm(tmp_path / "lm", target, tmp_path / "ft", progress=False, n_workers=1,
                train_cfg=cfg(freeze_epochs=1, freeze_lr=2e-2, epochs=0, lr_div=2.6))
    ft = LanguageModel.load(tmp_path / "ft")
    assert json.loads((tmp_path / "ft" / "config.json").read_text())["keep_base_vocab"] == "yes"
    assert absent in ft.vocab and "zorblat" in ft.vocab
    assert set(base.vocab.itos) <= set(ft.vocab.itos)
    assert ft.vocab.stoi["zorblat"] < ft.vocab.stoi[absent]  # the target's words come first
    with pytest.raises(UlmfitError, match="keep_base_vocab"):
        finetune_lm(tmp_path / "lm", target, tmp_path / "ft2", progress=False, keep_base_vocab="maybe")



def test_a_second_round_of_finetuning_starts_from_the_first(tmp_path, corpus):
    """A fine-tuned LM is a valid base for more fine-tuning on the same text (the benchmark's second
    round on 20 Newsgroups): same vocabulary, and it starts where the first round ended."""
    pretrain(corpus, tmp_path / "lm", preset="tiny", train_cfg=cfg(epochs=1), progress=False, n_workers=1)
    target = tmp_path / "target.txt"
    target.write_text("\n".join(f"The film was wonderful and the zorblat was great {i % 5} ." for i in range(300)))
    first = finetune_lm(tmp_path / "lm", target, tmp_path / "ft", progress=False, n_workers=1, keep_base_vocab="no",
                        train_cfg=cfg(freeze_epochs=1, freeze_lr=2e-2, epochs=1, lr_div=2.6))
    second = finetune_lm(tmp_path / "ft", target, tmp_path / "ft2", progress=False, n_workers=1, keep_base_vocab="no",
                         train_cfg=cfg(freeze_epochs=0, epochs=1, lr_div=2.6))
    assert LanguageModel.load(tmp_path / "ft2").vocab.itos == LanguageModel.load(tmp_path / "ft").vocab.itos
    start = json.loads((tmp_path / "ft2" / "metrics.jsonl").read_text().split("\n")[0])
    assert start["step"] == 0
    assert start["valid_perplexity"] == pytest.approx(first["valid_perplexity"], rel=1e-3)
    assert second["valid_perplexity"] <= first["valid_perplexity"] * 1.05


def test_a_resumed_finetuning_keeps_the_vocabulary_choice_of_its_first_run(tmp_path, corpus, monkeypatch):
    """--resume reads keep_base_vocab from the interrupted run: a run started with "no" on a small
    text is resumed with the default ("auto", which alone would keep every pretrained word)."""
    pretrain(corpus, tmp_path / "lm", preset="tiny", train_cfg=cfg(epochs=1), progress=False, n_workers=1)
    base = LanguageModel.load(tmp_path / "lm")
    target = tmp_path / "target.txt"
    target.write_text("\n".join(f"The film was wonderful and the zorblat was great {i % 5} ." for i in range(300)))
    c = cfg(freeze_epochs=1, freeze_lr=2e-2, epochs=1, lr_div=2.6)
    with monkeypatch.context() as m:
        interrupt_at(m, 2)
        with pytest.raises(TrainingInterrupted, match="interrupted at step 2"):
            finetune_lm(tmp_path / "lm", target, tmp_path / "ft", progress=False, n_workers=1, train_cfg=c,
                        keep_base_vocab="no")
    finetune_lm(None, None, tmp_path / "ft", progress=False, n_workers=1, resume=True)
    ft = LanguageModel.load(tmp_path / "ft")
    assert len(ft.vocab) < len(base.vocab) and "zorblat" in ft.vocab
    assert json.loads((tmp_path / "ft" / "config.json").read_text())["keep_base_vocab"] == "no"


def test_max_vocab_raises_the_cap_on_the_finetuned_vocabulary_and_survives_resume(tmp_path, corpus, monkeypatch):
    """A pretrained model built with a small cap passes it on to fine-tuning; --max-vocab gives a
    large target text's own words ids beyond it, and a resumed run keeps the cap it started with."""
    from ulmfit.text.tokenize import TokenizerConfig

    pretrain(corpus, tmp_path / "lm", preset="tiny", tok_cfg=TokenizerConfig(max_vocab=30), train_cfg=cfg(epochs=1),
             progress=False, n_workers=1)
    assert len(LanguageModel.load(tmp_path / "lm").vocab) == 30
    target = tmp_path / "target.txt"
    words = [f"term{i}" for i in range(80)]  # 80 new words, each seen 4 times
    target.write_text("\n".join(f"the {words[i % 80]} and {words[(i + 7) % 80]} ." for i in range(160)))
    c = cfg(freeze_epochs=1, freeze_lr=2e-2, epochs=1, lr_div=2.6)
    finetune_lm(tmp_path / "lm", target, tmp_path / "capped", progress=False, n_workers=1, keep_base_vocab="no",
                train_cfg=c)
    assert len(LanguageModel.load(tmp_path / "capped").vocab) == 30  # the pretrained cap
    with monkeypatch.context() as m:
        interrupt_at(m, 2)
        with pytest.raises(TrainingInterrupted, match="interrupted at step 2"):
            finetune_lm(tmp_path / "lm", target, tmp_path / "ft", progress=False, n_workers=1, train_cfg=c,
                        keep_base_vocab="no", max_vocab=1000)
    finetune_lm(None, None, tmp_path / "ft", progress=False, n_workers=1, resume=True)
    ft = LanguageModel.load(tmp_path / "ft")
    assert all(w in ft.vocab for w in words) and 80 < len(ft.vocab) <= 1000
    saved = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert saved["tokenizer"]["max_vocab"] == 1000  # a later round from this model inherits the cap
    with pytest.raises(UlmfitError, match="max_vocab must be larger"):
        finetune_lm(tmp_path / "lm", target, tmp_path / "bad", progress=False, n_workers=1, max_vocab=5)


def test_max_vocab_is_refused_for_a_subword_model(tmp_path, corpus):
    from ulmfit.text.tokenize import TokenizerConfig

    pretrain(corpus, tmp_path / "sp", preset="tiny", tok_cfg=TokenizerConfig(kind="subword", sp_vocab_size=80),
             train_cfg=cfg(epochs=1), progress=False, n_workers=1)
    with pytest.raises(UlmfitError, match="word-level models"):
        finetune_lm(tmp_path / "sp", corpus, tmp_path / "ft", progress=False, n_workers=1, max_vocab=100_000)
    assert not (tmp_path / "ft" / "model.safetensors").exists()


def test_backward_model_trains_on_reversed_text_and_cannot_generate(tmp_path, corpus):
    pretrain(corpus, tmp_path / "bwd", preset="tiny", train_cfg=cfg(epochs=1, backwards=True), progress=False,
             n_workers=1)
    lm = LanguageModel.load(tmp_path / "bwd")
    assert lm.backwards
    with pytest.raises(UlmfitError, match="backward"):
        lm.generate("The cat")


def test_training_a_backward_model_further_keeps_it_backward(tmp_path, corpus, capsys):
    # --from / --init-from a backward model without --backwards: training it on forward text would
    # undo its pretraining and label it forward, which the classifier then trusts
    pretrain(corpus, tmp_path / "bwd", preset="tiny", train_cfg=cfg(epochs=1, backwards=True), progress=False,
             n_workers=1)
    finetune_lm(tmp_path / "bwd", corpus, tmp_path / "ft", train_cfg=cfg(freeze_epochs=1, epochs=1),
                n_workers=1)
    assert "is a backward language model; training it on reversed text" in capsys.readouterr().out
    assert LanguageModel.load(tmp_path / "ft").backwards
    from ulmfit.io import UlmfitWarning

    # without progress (--quiet) the note is a warning, not dropped: a setting given did not take effect
    with pytest.warns(UlmfitWarning, match="is a backward language model; training it on reversed text"):
        pretrain(corpus, tmp_path / "more", train_cfg=cfg(epochs=1), progress=False, n_workers=1,
                 init_from=tmp_path / "bwd")
    assert LanguageModel.load(tmp_path / "more").backwards
    # and a forward model stays forward when --backwards is given by mistake
    pretrain(corpus, tmp_path / "fwd", preset="tiny", train_cfg=cfg(epochs=1), progress=False, n_workers=1)
    with pytest.warns(UlmfitWarning, match="is a forward language model; training it on forward text"):
        finetune_lm(tmp_path / "fwd", corpus, tmp_path / "ft2", progress=False, n_workers=1,
                    train_cfg=cfg(freeze_epochs=0, epochs=1, backwards=True))
    assert not LanguageModel.load(tmp_path / "ft2").backwards


def test_generate_and_evaluate_from_python(tmp_path, corpus):
    pretrain(corpus, tmp_path / "lm", preset="tiny", train_cfg=cfg(epochs=2), progress=False, n_workers=1)
    lm = LanguageModel.load(tmp_path / "lm")
    text = lm.generate("The cat", n_tokens=15, seed=1)
    assert text.startswith("The cat") and len(text.split()) > 4
    assert text == lm.generate("The cat", n_tokens=15, seed=1)  # seeded sampling is reproducible
    res = lm.evaluate(["The cat likes the red ball. A dog finds many books."])
    assert 1.0 < res["perplexity"] < len(lm.vocab)


def test_the_language_model_api_refuses_what_it_would_misread(tmp_path, corpus):
    pretrain(corpus, tmp_path / "lm", preset="tiny", train_cfg=cfg(epochs=1), progress=False, n_workers=1)
    lm = LanguageModel.load(tmp_path / "lm")
    with pytest.raises(UlmfitError, match="not a single string"):  # it would be scored letter by letter
        lm.perplexity("The cat likes the red ball.")
    with pytest.raises(UlmfitError, match=r"texts\[1\] is NoneType"):
        lm.perplexity(["The cat.", None])
    with pytest.raises(UlmfitError, match="give the texts"):
        lm.evaluate()
    with pytest.raises(UlmfitError, match="too few to measure a perplexity"):
        lm.perplexity(["cat"])
    # the prompt comes back as typed, also its words the vocabulary lacks
    assert lm.generate("Zebras quixotically", n_tokens=0) == "Zebras quixotically"
    assert lm.generate("I \u2764 Z\u00fcrich", n_tokens=3, seed=0).startswith("I \u2764 Z\u00fcrich ")
    for bad in ({"temperature": float("nan")}, {"top_k": -1}, {"n_tokens": -5}):
        with pytest.raises(UlmfitError, match="must be"):
            lm.generate("The cat", **bad)
    with pytest.raises(UlmfitError, match="prompt must be a string"):
        lm.generate(None)
    for call in (lambda: pretrain(["a text", "another"], tmp_path / "p", progress=False),
                 lambda: finetune_lm(tmp_path / "lm", ["a text"], tmp_path / "p", progress=False)):
        with pytest.raises(UlmfitError, match="too few for a batch"):  # texts in memory are read: too few here
            call()
    with pytest.raises(UlmfitError, match="unknown preset 'huge'"):
        pretrain(corpus, tmp_path / "p", preset="huge", progress=False)
    assert not (tmp_path / "p").exists()  # all refused before anything was written


def test_a_run_that_fails_on_its_inputs_leaves_no_empty_out_folder(tmp_path, corpus):
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00\x81" * 100)
    for call in (lambda out: finetune_lm(tmp_path / "no-such-model", corpus, out, progress=False),
                 lambda out: pretrain(tmp_path / "empty.txt", out, preset="tiny", progress=False, n_workers=1),
                 lambda out: pretrain(tmp_path / "binary.txt", out, preset="tiny", progress=False, n_workers=1)):
        with pytest.raises(UlmfitError):
            call(tmp_path / "out")
        assert not (tmp_path / "out").exists()
    (tmp_path / "mine").mkdir()  # a folder the user made stays
    with pytest.raises(UlmfitError):
        pretrain(tmp_path / "empty.txt", tmp_path / "mine", preset="tiny", progress=False, n_workers=1)
    assert (tmp_path / "mine").is_dir()
    # nor the empty parents made for a nested --out, up to the first folder that was there
    with pytest.raises(UlmfitError):
        pretrain(tmp_path / "empty.txt", tmp_path / "mine" / "a" / "b" / "lm", preset="tiny", progress=False,
                 n_workers=1)
    assert (tmp_path / "mine").is_dir() and not (tmp_path / "mine" / "a").exists()


def test_pretraining_continues_from_a_finished_model_with_its_vocabulary(tmp_path, corpus):
    pretrain(corpus, tmp_path / "lm", preset="tiny", train_cfg=cfg(epochs=1), progress=False, n_workers=1)
    with pytest.raises(UlmfitError, match="holds no saved run"):  # nothing there (a wrong path, or no save yet)
        pretrain(corpus, tmp_path / "lm2", progress=False, resume=True)
    (tmp_path / "lm" / "train_state.json").unlink()  # like a shipped model: weights only
    with pytest.raises(UlmfitError, match="--init-from"):
        pretrain(corpus, tmp_path / "lm", progress=False, resume=True)
    first = json.loads((tmp_path / "lm" / "config.json").read_text())
    res = pretrain(corpus, tmp_path / "more", train_cfg=cfg(epochs=1, lr=3e-3), progress=False, n_workers=1,
                   init_from=tmp_path / "lm")
    more = json.loads((tmp_path / "more" / "config.json").read_text())
    assert more["continued_from"] == str((tmp_path / "lm").resolve())
    assert more["earlier_runs"][0]["history"][-1]["valid_loss"] == first["history"][-1]["valid_loss"]
    assert (tmp_path / "more" / "vocab.txt").read_text() == (tmp_path / "lm" / "vocab.txt").read_text()
    assert res["valid_loss"] < first["history"][-1]["valid_loss"]  # it kept learning from where it was


def test_early_stopping_stops_after_patience_epochs_and_keeps_the_best_epoch(tmp_path, corpus, monkeypatch):
    """Scripted validation losses: best at epoch 2, then two worse epochs -> stop after epoch 4 of 6
    and keep epoch 2's weights (in the saved model, not only in memory)."""
    losses = iter([3.0, 2.0, 2.5, 2.6, 1.0, 0.5])
    snapshots = {}

    def validate(self):
        snapshots[self.epoch + 1] = {k: v.clone() for k, v in self.model.state_dict().items()}
        loss = next(losses)
        return {"loss": loss, "perplexity": math.exp(loss), "accuracy": 0.0, "tokens": 1}

    monkeypatch.setattr(LMTrainer, "validate", validate)
    res = pretrain(corpus, tmp_path / "lm", preset="tiny", train_cfg=cfg(epochs=6, patience=2), progress=False,
                   n_workers=1)
    assert res["restored_best_epoch"] == 2 and res["valid_loss"] == 2.0
    assert json.loads((tmp_path / "lm" / "config.json").read_text())["kept_epoch"] == 2  # export keeps it too
    state = json.loads((tmp_path / "lm" / "train_state.json").read_text())
    assert state["epoch"] == 4 and state["best_epoch"] == 2  # epochs 5 and 6 never ran
    saved, _, _ = ckpt.load_model(tmp_path / "lm")
    for k, v in saved.state_dict().items():
        torch.testing.assert_close(v, snapshots[2][k], msg=k)
    assert any(not torch.equal(snapshots[4][k], snapshots[2][k]) for k in snapshots[2])  # it did train on


def test_a_time_plan_made_after_the_frozen_epoch_fixes_the_unfrozen_epochs_and_survives_resume(
        tmp_path, corpus, monkeypatch):
    """plan_epochs (the demo's time budget) is asked once, with the frozen epoch's wall time, and its
    answer, clamped to 1..epochs, becomes the unfrozen phase's length: in the saved config (so an
    interrupted run resumes with the same schedule, even without the plan) and in the schedule."""
    pretrain(corpus, tmp_path / "lm", preset="tiny", train_cfg=cfg(epochs=1), progress=False, n_workers=1)
    target = tmp_path / "target.txt"
    target.write_text("\n".join(f"The film was wonderful and the zorblat was great {i % 5} ." for i in range(150)))
    c = cfg(freeze_epochs=1, freeze_lr=2e-2, epochs=2, lr_div=2.6)
    asked = []

    def plan(epoch_s):
        asked.append(epoch_s)
        return 1

    finetune_lm(tmp_path / "lm", target, tmp_path / "ft", progress=False, n_workers=1, keep_base_vocab="no",
                train_cfg=c, plan_epochs=plan)
    assert len(asked) == 1 and asked[0] > 0
    saved = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert saved["train"]["epochs"] == 1 and [h["epoch"] for h in saved["history"]] == [1, 2]
    records = [json.loads(l) for l in (tmp_path / "ft" / "metrics.jsonl").read_text().split("\n") if l]
    assert [r["planned_epochs"] for r in records if "planned_epochs" in r] == [1]
    assert c.epochs == 2  # the caller's config is not changed
    frozen_steps = saved["history"][0]["step"]
    # the schedule spans the planned epoch: its last step is at the bottom of the slanted triangle
    lrs = []
    real = LMTrainer.set_lrs

    def spy(self, t, T, seq_len):
        lrs.append((self.epoch, t, T))
        return real(self, t, T, seq_len)

    with monkeypatch.context() as m:
        m.setattr(LMTrainer, "set_lrs", spy)
        finetune_lm(tmp_path / "lm", target, tmp_path / "again", progress=False, n_workers=1, keep_base_vocab="no",
                    train_cfg=c, plan_epochs=lambda s: 99)  # more than allowed: clamped to 2
    unfrozen = [(t, T) for e, t, T in lrs if e >= 1]
    assert len({T for _, T in unfrozen}) == 1 and unfrozen[-1][0] == unfrozen[-1][1] - 1
    assert json.loads((tmp_path / "again" / "config.json").read_text())["train"]["epochs"] == 2
    # interrupted in the planned unfrozen phase, resumed without the plan: ends as the uninterrupted run
    with monkeypatch.context() as m:
        interrupt_at(m, frozen_steps + 3)
        with pytest.raises(TrainingInterrupted, match="interrupted"):
            finetune_lm(tmp_path / "lm", target, tmp_path / "cut", progress=False, n_workers=1,
                        keep_base_vocab="no", train_cfg=c, plan_epochs=plan)
    finetune_lm(None, None, tmp_path / "cut", progress=False, n_workers=1, resume=True)
    a, _, _ = ckpt.load_model(tmp_path / "ft")
    b, _, _ = ckpt.load_model(tmp_path / "cut")
    assert json.loads((tmp_path / "cut" / "config.json").read_text())["train"]["epochs"] == 1
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    with pytest.raises(UlmfitError, match="frozen phase"):
        finetune_lm(tmp_path / "lm", target, tmp_path / "nofrozen", progress=False, n_workers=1,
                    train_cfg=cfg(epochs=2), plan_epochs=plan)


@pytest.mark.parametrize("settings,says", [
    ({"bs": 0}, "bs must be at least 1, not 0"),
    ({"epochs": 0}, "epochs \\+ freeze_epochs must be at least 1"),
    ({"lr": -1}, "lr must be above 0, not -1"),
    ({"lr": "3e-3"}, "lr must be a number, not '3e-3'"),
    ({"schedule": "cosine"}, "schedule must be one of stlr, onecycle, constant"),
    ({"cut_frac": 1.0}, "cut_frac must be below 1"),
    ({"bf16": "yes"}, "bf16 must be True or False"),
    ({"max_tokens": 2.5}, "max_tokens must be a whole number or None"),
])
def test_a_language_model_config_names_the_bad_setting(settings, says):
    with pytest.raises(UlmfitError, match=f"LMTrainConfig: {says}"):
        LMTrainConfig(**settings)


def test_python_finetuning_with_a_dict_gets_the_command_line_defaults(tmp_path, corpus, monkeypatch):
    """A dict of settings goes over finetune-lm's defaults (frozen epoch, patience); an unknown key,
    or something else than a config or a dict, is refused before anything is written."""
    from ulmfit import pretrained
    from ulmfit.cli import main

    pretrain(corpus, tmp_path / "lm", preset="tiny", train_cfg=cfg(epochs=1), progress=False, n_workers=1)
    finetune_lm(tmp_path / "lm", corpus, tmp_path / "py", progress=False, n_workers=1,
                train_cfg={"epochs": 1, "bs": 8, "bptt": 16})
    assert main(["finetune-lm", "--from", str(tmp_path / "lm"), str(corpus), "--out", str(tmp_path / "cli"),
                 "--epochs", "1", "--bs", "8", "--bptt", "16", "--quiet", "--workers", "1"]) == 0
    py, cli = (json.loads((tmp_path / d / "config.json").read_text())["train"] for d in ("py", "cli"))
    assert py == cli and py["freeze_epochs"] == 1 and py["patience"] == 1
    with pytest.raises(UlmfitError, match="unknown setting\\(s\\) 'epoch'"):
        finetune_lm(tmp_path / "lm", corpus, tmp_path / "bad", train_cfg={"epoch": 1}, progress=False)
    with pytest.raises(UlmfitError, match="train_cfg must be a LMTrainConfig or a dict"):
        pretrain(corpus, tmp_path / "bad", train_cfg=[1], progress=False)
    assert not (tmp_path / "bad").exists()
    # no base model given: the shipped one of the run's direction, as `ulmfit finetune-lm` without --from
    asked = []
    monkeypatch.setattr(pretrained, "default_lm", lambda backwards=False: asked.append(backwards) or tmp_path / "lm")
    finetune_lm(None, corpus, tmp_path / "shipped", progress=False, n_workers=1,
                train_cfg={"epochs": 0, "bs": 8, "bptt": 16})
    assert asked == [False] and (tmp_path / "shipped" / "model.safetensors").exists()


def test_training_leaves_the_callers_random_generator_as_it_was(tmp_path, corpus):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    pretrain(corpus, tmp_path / "lm", preset="tiny", train_cfg=cfg(epochs=1), progress=False, n_workers=1)
    finetune_lm(tmp_path / "lm", corpus, tmp_path / "ft", progress=False, n_workers=1,
                train_cfg={"epochs": 1, "bs": 8, "bptt": 16})
    assert torch.equal(torch.rand(3), expected)


def test_python_arguments_of_the_wrong_kind_are_named(tmp_path, corpus):
    from ulmfit.api import resolve_device

    with pytest.raises(UlmfitError, match="--device tpu: not a device PyTorch knows"):
        resolve_device("tpu")
    with pytest.raises(UlmfitError, match="runs on the CPU or a CUDA GPU"):
        resolve_device("meta")
    with pytest.raises(UlmfitError, match="arch_overrides: unknown setting\\(s\\) 'hidden'"):
        pretrain(corpus, tmp_path / "a", preset="tiny", arch_overrides={"hidden": 10}, progress=False)
    with pytest.raises(UlmfitError, match="arch_overrides: .*hidden_size"):
        pretrain(corpus, tmp_path / "a", preset="tiny", arch_overrides={"hidden_size": -3}, progress=False)
    assert not (tmp_path / "a").exists()
    pretrain(corpus, tmp_path / "lm", preset="tiny", train_cfg=cfg(epochs=1), progress=False, n_workers=1)
    lm = LanguageModel.load(tmp_path / "lm")
    with pytest.raises(UlmfitError, match="temperature must be a finite number > 0, not '1'"):
        lm.generate("The", temperature="1")
    with pytest.raises(UlmfitError, match="source must be the path of a file or folder, not list"):
        lm.evaluate(source=["some text"])
    with pytest.raises(UlmfitError, match="a model is given by the path of its directory, not NoneType"):
        LanguageModel.load(None)
    with pytest.raises(UlmfitError, match="not a single string"):
        lm.encode("the film")


def test_numpy_numbers_in_a_config_become_plain_ones_that_config_json_can_hold():
    import numpy as np

    from ulmfit.train.classify import ClassifierTrainConfig

    c = LMTrainConfig(bs=np.int64(32), lr=np.float32(0.01), save_every_minutes=0, max_minutes=0)
    assert type(c.bs) is int and type(c.lr) is float and json.dumps(c.to_dict())
    k = ClassifierTrainConfig(stage_epochs=np.array([1, 1, 1, 2]), bs=np.int32(16))
    assert k.stage_epochs == (1, 1, 1, 2) and type(k.stage_epochs[0]) is int and json.dumps(k.to_dict())


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/maps"), reason="reads /proc/self/maps")
def test_a_finished_run_leaves_no_corpus_file_open(tmp_path, corpus):
    """The tokenised corpus is memory-mapped; a reference cycle through the trainer (its save
    function reads its config) kept it mapped after the run returned, until a full garbage
    collection, which on some systems keeps the cache from being deleted."""
    pretrain(corpus, tmp_path / "lm", preset="tiny", train_cfg=cfg(epochs=1), progress=False, n_workers=1)
    with open("/proc/self/maps") as f:
        assert not [line for line in f if line.rstrip().endswith("ids.bin") and str(tmp_path) in line]


def test_a_second_interrupt_during_the_save_is_ignored():
    """A terminal's Ctrl-C reaches a torchrun worker twice (from the terminal, and forwarded by
    torchrun); the second one used to break the interrupt save."""
    import os
    import signal

    from ulmfit.train.loop import sigterm_as_interrupt

    before = signal.getsignal(signal.SIGINT)
    saved = []
    with pytest.raises(UlmfitError, match="saved"):
        with sigterm_as_interrupt():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                for _ in range(1000):  # the signal is delivered between bytecodes
                    pass
            except KeyboardInterrupt:
                os.kill(os.getpid(), signal.SIGINT)  # the second one, while "saving"
                os.kill(os.getpid(), signal.SIGTERM)
                saved.append(True)
                raise UlmfitError("saved")
    assert saved == [True] and signal.getsignal(signal.SIGINT) is before


def test_a_torchrun_worker_that_stops_keeps_ignoring_stop_signals(monkeypatch):
    """torchrun sends SIGTERM to the survivors of a lost process; arriving after the run had put
    back the default handler (die), it killed process 0 before it said where the run was saved.
    A worker of the command line (which ends with its command) keeps ignoring them; from Python
    (a notebook, a script of one's own, under torchrun or not) the handlers come back."""
    import signal

    from ulmfit.train import loop
    from ulmfit.train.loop import sigterm_as_interrupt

    stops = (signal.SIGINT, signal.SIGTERM)
    before = [signal.getsignal(s) for s in stops]
    try:
        for cli_worker, after in ((False, before), (True, [signal.SIG_IGN] * 2)):
            monkeypatch.setitem(loop.STOPPING_ENDS_PROCESS, "torchrun_cli", cli_worker)
            with pytest.raises(UlmfitError):
                with sigterm_as_interrupt():
                    raise UlmfitError("partner lost; everything is saved")
            assert [signal.getsignal(s) for s in stops] == after, cli_worker
        for s, h in zip(stops, before):
            signal.signal(s, h)
        with sigterm_as_interrupt():  # a run that ends normally gets its handlers back
            pass
        assert [signal.getsignal(s) for s in stops] == before
    finally:
        for s, h in zip(stops, before):
            signal.signal(s, h)


def test_a_torchrun_worker_ends_through_os_exit_with_the_commands_code(monkeypatch, capsys):
    """The interpreter's teardown aborted about one finished torchrun process in 20 ("terminate
    called without an active exception"); a worker flushes and leaves through os._exit."""
    from ulmfit import cli

    class Exited(Exception):
        pass

    def fake_exit(code):
        raise Exited(code)

    from ulmfit.train import loop

    monkeypatch.setitem(loop.STOPPING_ENDS_PROCESS, "torchrun_cli", False)  # and back to False afterwards
    monkeypatch.setattr(cli, "maybe_reexec_with_jemalloc", lambda argv: None)
    monkeypatch.setattr(cli.os, "_exit", fake_exit)
    monkeypatch.setattr(sys, "argv", ["ulmfit", "lr-find", "--model", "m", "c.txt"])
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    slept = []
    monkeypatch.setattr(cli.time, "sleep", slept.append)
    with pytest.raises(Exited) as e:
        cli.main()
    assert e.value.args == (2,) and "runs in one process" in capsys.readouterr().err and slept == []
    monkeypatch.setenv("RANK", "1")  # a failed process 1 gives process 0 time to say why before torchrun stops it
    with pytest.raises(Exited) as e:
        cli.main()
    assert e.value.args == (2,) and capsys.readouterr().err == "" and slept == [cli.TORCHRUN_ERROR_GRACE_S]
    assert loop.STOPPING_ENDS_PROCESS["torchrun_cli"]  # its stop signals stay ignored once it stops
    loop.STOPPING_ENDS_PROCESS["torchrun_cli"] = False
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert cli.main() == 2  # one process: returns as before
    assert cli.main(["lr-find", "--model", "m", "c.txt"]) == 2  # called from Python: never exits


def test_commands_that_run_in_one_process_refuse_torchrun(tmp_path, corpus, monkeypatch, capsys):
    from ulmfit import api
    from ulmfit.classifier_api import train_classifier
    from ulmfit.cli import main
    from ulmfit.demo import run_demo

    monkeypatch.setenv("WORLD_SIZE", "2")
    for call in (lambda: train_classifier(None, corpus, tmp_path / "c"), lambda: run_demo(tmp_path / "d")):
        with pytest.raises(UlmfitError, match="runs in one process: start it without torchrun"):
            call()
    assert main(["lr-find", "--model", "m", str(corpus)]) == 2
    assert "lr-find runs in one process" in capsys.readouterr().err
    monkeypatch.setenv("RANK", "1")  # process 1 leaves the message to process 0
    assert main(["lr-find", "--model", "m", str(corpus)]) == 2
    assert capsys.readouterr().err == ""
    # "cuda" under torchrun: each process on its own GPU (LOCAL_RANK), not all on GPU 0
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(api.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(api.torch.cuda, "device_count", lambda: 2)
    assert str(api.resolve_device("cuda")) == "cuda:1" and str(api.resolve_device("cuda:0")) == "cuda:0"


def test_an_interrupt_is_a_keyboard_interrupt_not_an_error_that_except_exception_swallows(tmp_path, corpus,
                                                                                         monkeypatch, capsys):
    """A loop over settings that logs failures (`except Exception`) must still stop on Ctrl-C; the
    CLI prints where the run was saved and exits with 130, as an interrupted program does."""
    from ulmfit.cli import main

    assert issubclass(TrainingInterrupted, KeyboardInterrupt) and not issubclass(TrainingInterrupted, Exception)
    interrupt_at(monkeypatch, 3)
    args = ["pretrain", str(corpus), "--out", str(tmp_path / "lm"), "--preset", "tiny", "--epochs", "1", "--bs", "4",
            "--bptt", "8", "--workers", "1", "--quiet"]
    assert main(args) == 130
    err = capsys.readouterr().err
    assert "interrupted at step 3" in err and "--resume" in err and "error:" not in err
    assert "resume=True" not in err  # the Python API's advice is for the Python API's users
    monkeypatch.undo()
    assert main(args + ["--resume"]) == 0


def test_a_lost_partner_process_saves_the_run_at_its_last_whole_step_and_it_resumes_as_never_stopped(
        tmp_path, corpus, monkeypatch):
    """Under torchrun a partner killed alone fails the gradient all-reduce: the run is saved as by
    Ctrl-C inside the batch (weights not updated, the batch redone on resume), with its own message."""
    from ulmfit.train.distributed import PartnerLost

    c = cfg(epochs=2)
    pretrain(corpus, tmp_path / "full", preset="tiny", train_cfg=c, progress=False, n_workers=1)
    import os
    import signal

    real_save = ckpt.save_tensors
    killed = []

    def save_tensors(*a, **k):  # torchrun's SIGTERM to the survivors, arriving while the run saves
        if not killed:
            killed.append(1)
            os.kill(os.getpid(), signal.SIGTERM)
        return real_save(*a, **k)

    with monkeypatch.context() as m:
        interrupt_after_backward(m, 23, PartnerLost("Connection closed by peer [127.0.0.1]:1234"))
        m.setattr(ckpt, "save_tensors", save_tensors)
        with pytest.raises(UlmfitError, match=r"exchange of gradients between processes failed \(Connection closed "
                                              r"by peer .*\): another process .*; everything up to step 23 is saved "
                                              r"in .*cut.*--resume"):
            pretrain(corpus, tmp_path / "cut", preset="tiny", train_cfg=c, progress=False, n_workers=1)
    assert killed and signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN  # restored after the run
    assert json.loads((tmp_path / "cut" / "train_state.json").read_text())["step"] == 23
    pretrain(corpus, tmp_path / "cut", progress=False, resume=True, n_workers=1)
    a, _, _ = ckpt.load_model(tmp_path / "full")
    b, _, _ = ckpt.load_model(tmp_path / "cut")
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-4, msg=n)


def test_a_run_whose_checkpoint_cannot_fit_the_free_space_is_refused_before_it_trains(tmp_path, corpus, monkeypatch,
                                                                                       capsys):
    import shutil
    from collections import namedtuple

    from ulmfit.train.loop import LMTrainer

    usage = namedtuple("usage", "total used free")
    steps = []
    real_step = LMTrainer.set_lrs
    monkeypatch.setattr(LMTrainer, "set_lrs", lambda self, *a: steps.append(1) or real_step(self, *a))
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9, 1000))
    with pytest.raises(UlmfitError, match=r"has 0.0 MB free, and a checkpoint of this model takes about") as e:
        pretrain(corpus, tmp_path / "lm", preset="tiny", train_cfg=cfg(epochs=1), progress=False, n_workers=1)
    assert not steps  # refused before the first step, not at the first save
    need = float(re.search(r"takes about ([\d.,]+) MB", str(e.value)).group(1).replace(",", "")) * 1e6
    assert need > 0
    # room for one checkpoint, not for two: a warning, and the run trains
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**12, 0, int(1.5 * need) + 10**5))
    pretrain(corpus, tmp_path / "lm2", preset="tiny", train_cfg=cfg(epochs=1), progress=False, n_workers=1)
    assert "later saves may fail for lack of space" in capsys.readouterr().err and steps


def test_a_signal_while_an_epoch_is_recorded_and_saved_stops_after_the_save_and_resumes_as_never_stopped(
        tmp_path, corpus, monkeypatch):
    """The epoch's record, best weights (early stopping) and checkpoint are written together: a
    SIGTERM in their middle used to log the epoch twice, or name a best epoch whose weights were
    not saved."""
    c = cfg(epochs=3, patience=5)
    pretrain(corpus, tmp_path / "full", preset="tiny", train_cfg=c, progress=False, n_workers=1)
    with monkeypatch.context() as m:
        sigterm_at_epoch_record(m, 1)
        with pytest.raises(TrainingInterrupted):
            pretrain(corpus, tmp_path / "cut", preset="tiny", train_cfg=c, progress=False, n_workers=1)
    state = json.loads((tmp_path / "cut" / "train_state.json").read_text())
    assert state["epoch"] == 1 and state["batch"] == 0 and state["best_epoch"] == 1
    assert ckpt.load_tensors(tmp_path / "cut" / "best.safetensors")[1]["epoch"] == "1"
    pretrain(corpus, tmp_path / "cut", progress=False, resume=True, n_workers=1)
    epochs = [json.loads(l)["epoch"] for l in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
              if "valid_loss" in json.loads(l) and "partial_epoch" not in json.loads(l)]
    assert epochs == [1, 2, 3]
    a = ckpt.load_tensors(tmp_path / "full" / "model.safetensors")[0]
    b = ckpt.load_tensors(tmp_path / "cut" / "model.safetensors")[0]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_checkpoint_save_that_fails_leaves_the_best_weights_of_the_checkpoint_it_keeps(tmp_path, corpus,
                                                                                           monkeypatch):
    """best.safetensors was written on its own before the checkpoint: a save that then failed (a
    file-size limit, a full disk) left it an epoch ahead of the training state that resume reads."""
    c = cfg(epochs=3, patience=5)
    real, calls = ckpt.save_train_state, {"n": 0}

    def fails_at_epoch_2(out, *a, **k):
        calls["n"] += 1
        if a[2]["epoch"] == 2:  # the state of the save at the end of epoch 2
            raise OSError(27, "File too large")
        return real(out, *a, **k)

    with monkeypatch.context() as m:
        m.setattr(ckpt, "save_train_state", fails_at_epoch_2)
        with pytest.raises(OSError, match="File too large"):
            pretrain(corpus, tmp_path / "lm", preset="tiny", train_cfg=c, progress=False, n_workers=1)
    state = json.loads((tmp_path / "lm" / "train_state.json").read_text())
    assert state["epoch"] == 1 and state["best_epoch"] == 1
    best, meta = ckpt.load_tensors(tmp_path / "lm" / "best.safetensors")
    assert meta["epoch"] == "1"
    # a run left so by an earlier version is refused, not restored to the wrong weights
    ckpt.save_tensors(tmp_path / "lm" / "best.safetensors", best, {"epoch": "2"})
    with pytest.raises(UlmfitError, match="holds epoch 2, and the checkpoint says the best epoch is 1"):
        pretrain(corpus, tmp_path / "lm", progress=False, resume=True, n_workers=1)
    ckpt.save_tensors(tmp_path / "lm" / "best.safetensors", best, {"epoch": "1"})
    pretrain(corpus, tmp_path / "lm", progress=False, resume=True, n_workers=1)
    assert json.loads((tmp_path / "lm" / "train_state.json").read_text())["epoch"] == 3


def test_weights_that_cannot_be_written_name_their_file(tmp_path, monkeypatch):
    from safetensors import SafetensorError

    def too_large(*a, **k):
        raise SafetensorError("Error while serializing: I/O error: File too large (os error 27)")

    monkeypatch.setattr(ckpt, "save_file", too_large)
    with pytest.raises(UlmfitError, match=r"could not write .*best\.safetensors \(Error while serializing.*ulimit -f"):
        ckpt.save_tensors(tmp_path / "best.safetensors", {"w": torch.zeros(2)}, {})
    assert list(tmp_path.iterdir()) == []  # no partial file left


def test_a_resumed_run_drops_the_log_lines_written_after_its_checkpoint(tmp_path, corpus, monkeypatch):
    """A hard kill (SIGKILL, the OOM killer) leaves metrics.jsonl lines past the last checkpoint, and
    maybe a line cut short; the resumed run logs those steps again, so they are dropped first."""
    c = cfg(epochs=2, log_every=5)
    pretrain(corpus, tmp_path / "full", preset="tiny", train_cfg=c, progress=False, n_workers=1)
    with monkeypatch.context() as m:
        interrupt_at(m, 23)
        with pytest.raises(TrainingInterrupted):
            pretrain(corpus, tmp_path / "cut", preset="tiny", train_cfg=c, progress=False, n_workers=1)
    with open(tmp_path / "cut" / "metrics.jsonl", "a") as f:  # what the killed process went on to write
        f.write(json.dumps({"step": 25, "train_loss": 9.0}) + "\n" + '{"step": 30, "tra')
    pretrain(corpus, tmp_path / "cut", progress=False, resume=True, n_workers=1)

    def steps(d):
        return [(r["step"], sorted(r)) for r in map(json.loads, (d / "metrics.jsonl").read_text().splitlines())]

    assert steps(tmp_path / "cut") == steps(tmp_path / "full")


def test_a_new_budget_for_an_unfinished_run_is_said_to_replan_it_and_one_already_used_up_is_refused(
        tmp_path, corpus, monkeypatch, capsys):
    c = cfg(epochs=3)
    with monkeypatch.context() as m:
        interrupt_at(m, 100)  # in the second epoch (about 80 batches an epoch)
        with pytest.raises(TrainingInterrupted):
            pretrain(corpus, tmp_path / "lm", preset="tiny", train_cfg=c, progress=False, n_workers=1)
    assert json.loads((tmp_path / "lm" / "train_state.json").read_text())["epoch"] == 1
    with pytest.raises(UlmfitError, match="budget it has already used up: it has trained 1 epoch"):
        pretrain(corpus, tmp_path / "lm", progress=False, resume=True, n_workers=1, extend={"epochs": 1})
    capsys.readouterr()
    pretrain(corpus, tmp_path / "lm", progress=True, resume=True, n_workers=1, extend={"epochs": 4})
    assert "re-plans the learning-rate schedule of this unfinished run from step 100" in capsys.readouterr().out


def test_settings_given_from_python_with_resume_are_said_to_be_ignored(tmp_path, corpus, monkeypatch, capsys):
    c = cfg(epochs=2)
    with monkeypatch.context() as m:
        interrupt_at(m, 30)
        with pytest.raises(TrainingInterrupted):
            pretrain(corpus, tmp_path / "lm", preset="tiny", train_cfg=c, progress=False, n_workers=1)
    capsys.readouterr()
    with monkeypatch.context() as m:
        interrupt_at(m, 40)
        with pytest.raises(TrainingInterrupted):
            pretrain(corpus, tmp_path / "lm", train_cfg={"lr": 1.0, "bs": 4, "epochs": 2}, resume=True, n_workers=1,
                     valid_frac=0.3, encoding="utf-8", fmt="lines")
    out = capsys.readouterr().out
    assert "ignored: lr=1.0 (the run's: 0.01), bs=4 (the run's: 8)" in out and "epochs" not in out.split("ignored")[1]
    # the data settings too (those left at their defaults, or the same as the run's, are not named)
    assert "ignored: fmt='lines' (the run's: 'auto'), valid_frac=0.3 (the run's: 0.05)\n" in out
    with monkeypatch.context() as m:
        interrupt_at(m, 45)
        with pytest.raises(TrainingInterrupted):
            pretrain(str(corpus), tmp_path / "lm", resume=True, n_workers=1, fmt="auto", valid_frac=0.05)
    assert "ignored" not in capsys.readouterr().out
    with monkeypatch.context() as m:  # progress=False silences progress, not the news of an ignored setting
        interrupt_at(m, 50)
        with pytest.warns(UserWarning, match=r"resume=True continues the run with its saved settings; ignored: "
                                             r"lr=1\.0 \(the run's: 0\.01\)"):
            with pytest.raises(TrainingInterrupted):
                pretrain(None, tmp_path / "lm", train_cfg={"lr": 1.0}, resume=True, n_workers=1, progress=False)
    from ulmfit.cli import main

    capsys.readouterr()
    assert main(["pretrain", "--resume", str(tmp_path / "lm"), "--bs", "4", "--quiet"]) == 0
    err_out = "".join(capsys.readouterr())
    assert "ignored: --bs" in err_out and "resume=True" not in err_out  # the CLI's note alone, once


@pytest.mark.parametrize("where", ["the last epoch's record", "the step that spends the token budget"])
def test_a_signal_while_the_run_finishes_lets_it_finish_instead_of_leaving_it_unresumable(
        tmp_path, corpus, monkeypatch, where):
    """Held back until the bookkeeping was done, a signal used to stop a run that had just finished:
    it was reported as interrupted, and --resume refused it as finished."""
    c = cfg(epochs=2) if where == "the last epoch's record" else cfg(epochs=2, max_tokens=3000)
    full = pretrain(corpus, tmp_path / "full", preset="tiny", train_cfg=c, progress=False, n_workers=1)
    with monkeypatch.context() as m:
        if where == "the last epoch's record":
            sigterm_at_epoch_record(m, 2)
        else:
            signal_inside_optimizer_step(m, full["step"] - 1 if "step" in full else 24)
        res = pretrain(corpus, tmp_path / "cut", preset="tiny", train_cfg=c, progress=False, n_workers=1)
    assert res["valid_loss"] == pytest.approx(full["valid_loss"])
    a = ckpt.load_tensors(tmp_path / "full" / "model.safetensors")[0]
    b = ckpt.load_tensors(tmp_path / "cut" / "model.safetensors")[0]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_continued_pretraining_resumes_with_the_vocabulary_it_continued_from(tmp_path, corpus, monkeypatch):
    from conftest import make_corpus

    pretrain(corpus, tmp_path / "base", preset="tiny", train_cfg=cfg(epochs=1), progress=False, n_workers=1)
    more = make_corpus(tmp_path / "more.txt", n_docs=150, seed=3)
    c = cfg(epochs=2)
    pretrain(more, tmp_path / "full", train_cfg=c, progress=False, n_workers=1, init_from=tmp_path / "base")
    with monkeypatch.context() as m:
        interrupt_at(m, 30)
        with pytest.raises(TrainingInterrupted):
            pretrain(more, tmp_path / "cut", train_cfg=c, progress=False, n_workers=1, init_from=tmp_path / "base")
    pretrain(None, tmp_path / "cut", progress=False, resume=True, n_workers=1)  # was: "a different vocabulary"
    a = ckpt.load_tensors(tmp_path / "full" / "model.safetensors")[0]
    b = ckpt.load_tensors(tmp_path / "cut" / "model.safetensors")[0]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_holding_back_signals_is_for_the_main_thread_only():
    """Signal handlers run in the main thread: a block in another thread must not hold back (and
    later raise in that thread) a Ctrl-C meant for the main one."""
    import threading

    from ulmfit.train import loop

    seen = {}

    def worker():
        with loop.stop_deferred():
            seen["depth"] = loop._deferred["depth"]

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen["depth"] == 0
    with loop.stop_deferred():
        assert loop._deferred["depth"] == 1
    assert loop._deferred["depth"] == 0


def test_a_finetuning_resume_counts_its_frozen_epoch_in_the_budget(tmp_path, corpus, monkeypatch, capsys):
    pretrain(corpus, tmp_path / "base", preset="tiny", train_cfg=cfg(epochs=1), progress=False, n_workers=1)
    c = cfg(epochs=1, freeze_epochs=1, patience=0)
    with monkeypatch.context() as m:
        interrupt_at(m, 100)  # in the one unfrozen epoch (after the frozen one)
        with pytest.raises(TrainingInterrupted):
            finetune_lm(tmp_path / "base", corpus, tmp_path / "ft", train_cfg=c, progress=False, n_workers=1)
    assert json.loads((tmp_path / "ft" / "train_state.json").read_text())["epoch"] == 1
    capsys.readouterr()
    finetune_lm(None, None, tmp_path / "ft", resume=True, progress=True, n_workers=1, extend={"epochs": 2})
    assert "re-plans the learning-rate schedule of this unfinished run" in capsys.readouterr().out


def test_a_budget_in_a_train_cfg_dict_given_with_resume_extends_the_run(tmp_path, corpus, monkeypatch):
    with monkeypatch.context() as m:
        interrupt_at(m, 30)
        with pytest.raises(TrainingInterrupted):
            pretrain(corpus, tmp_path / "lm", preset="tiny", train_cfg=cfg(epochs=2), progress=False, n_workers=1)
    pretrain(corpus, tmp_path / "lm", train_cfg={"epochs": 3}, resume=True, progress=False, n_workers=1)
    state = json.loads((tmp_path / "lm" / "train_state.json").read_text())
    assert state["epoch"] == 3  # was: the saved 2, without a word


def test_a_language_model_that_got_worse_is_warned_about():
    from ulmfit.api import lm_training_warnings

    ep = [{"epoch": 1, "valid_loss": 4.0}, {"epoch": 2, "valid_loss": 3.5}]
    assert lm_training_warnings(ep, 3.5, 3.9) == []
    (w,) = lm_training_warnings(ep, 3.5, 3.2)  # fine-tuning ended above where it started
    assert "made the language model worse" in w and "perplexity 24.5 before, 33.1 now" in w
    (w,) = lm_training_warnings([*ep, {"epoch": 3, "valid_loss": 86.6}], 86.6, None)  # diverged late, kept last
    assert "perplexity of e^87, far above epoch 2's 33.1" in w and "--patience 1" in w
    assert lm_training_warnings([{"epoch": 1, "valid_loss": 3.0, "partial_epoch": 0.5}], 3.5, None) == []


def test_finetune_warns_when_it_ends_worse_than_the_model_it_started_from(tmp_path, corpus, monkeypatch):
    import itertools

    import ulmfit.api as api
    from ulmfit.train import loop

    pretrain(corpus, tmp_path / "lm", preset="tiny", train_cfg=cfg(epochs=1), progress=False, n_workers=1)
    losses = itertools.chain([3.0], itertools.repeat(3.6))  # before fine-tuning, then every epoch: worse

    def fake(*a, **k):
        v = next(losses)
        return {"loss": v, "perplexity": math.exp(v), "accuracy": 0.1, "tokens": 100}

    monkeypatch.setattr(loop, "evaluate_lm", fake)
    monkeypatch.setattr(api, "evaluate_lm", fake)
    with pytest.warns(UserWarning, match=r"fine-tuning made the language model worse on the held-out text "
                                         r"\(perplexity 20\.1 before, 36\.6 now\)"):
        finetune_lm(tmp_path / "lm", str(corpus), tmp_path / "ft", progress=False, n_workers=1,
                    train_cfg={"epochs": 1, "bs": 8, "bptt": 16, "patience": 0})


def test_a_finished_fine_tuning_run_counts_its_epochs_as_epochs_does(tmp_path, corpus):
    """It said 'a finished run (7 of 3 epochs)' to `--resume --epochs 2` on a run of 1 frozen + 6."""
    pretrain(corpus, tmp_path / "lm", preset="tiny", train_cfg=cfg(epochs=1), progress=False, n_workers=1)
    finetune_lm(tmp_path / "lm", str(corpus), tmp_path / "ft", progress=False, n_workers=1,
                train_cfg={"epochs": 2, "bs": 8, "bptt": 16, "patience": 0})
    with pytest.raises(UlmfitError, match=r"finished run \(3 epochs: 1 frozen \+ 2, .*--epochs above 2"):
        finetune_lm(None, None, tmp_path / "ft", resume=True, extend={"epochs": 1}, progress=False)


def test_a_run_its_token_budget_ended_asks_for_a_larger_budget_not_more_epochs(tmp_path, corpus):
    pretrain(corpus, tmp_path / "lm", preset="tiny", train_cfg=cfg(epochs=3, max_tokens=500), progress=False,
             n_workers=1)
    with pytest.raises(UlmfitError, match=r"finished run .*resume with a larger --max-tokens$"):
        pretrain(None, tmp_path / "lm", resume=True, progress=False)


def test_a_model_folder_from_elsewhere_gets_one_line_errors_not_loops_or_memory_blowups(tmp_path, corpus):
    """A config with 10**6 layers took 16 GB before its weights were read; a negative batch in the
    training state made --resume loop through an epoch for ever; nested JSON was a RecursionError."""
    from ulmfit.io import read_json
    from ulmfit.model.awd_lstm import AWDLSTMConfig

    with pytest.raises(ValueError, match="n_layers 1000000 is beyond what ulmfit builds"):
        AWDLSTMConfig(vocab_size=100, n_layers=10**6)
    with pytest.raises(ValueError, match=r"emb_size 100\.\.\. \(401 digits\) is beyond"):
        AWDLSTMConfig(vocab_size=100, emb_size=10**400)
    (tmp_path / "deep.json").write_text("[" * 5000 + "]" * 5000)
    with pytest.raises(UlmfitError, match="is not valid JSON .*RecursionError"):
        read_json(tmp_path / "deep.json")
    with pytest.raises(UlmfitError, match="is not a file: not a JSON file ulmfit wrote"):
        read_json("/dev/zero")  # it read until memory ran out
    pretrain(corpus, tmp_path / "lm", preset="tiny", train_cfg=cfg(epochs=1), progress=False, n_workers=1)
    state = json.loads((tmp_path / "lm" / "train_state.json").read_text())
    (tmp_path / "lm" / "train_state.json").write_text(json.dumps({**state, "batch": -1000000}))
    with pytest.raises(UlmfitError, match=r"batch is -1000000, not a count"):
        pretrain(corpus, tmp_path / "lm", train_cfg={"epochs": 2}, progress=False, resume=True, n_workers=1)


def test_the_language_model_commands_take_texts_in_memory(tmp_path, corpus, capsys):
    """A notebook holds its texts in a list (or an array, or a DataFrame's column): pretrain and
    finetune_lm take them as they take a file. They are kept once in the cache folder, named by their
    content, so the same texts find their tokens again and an interrupted run resumes without them."""
    import numpy as np

    from ulmfit.io import cache_root

    texts = [t for t in corpus.read_text(encoding="utf-8").splitlines() if t.strip()]
    lm = tmp_path / "lm"
    pretrain(texts, lm, preset="tiny", train_cfg=cfg(epochs=1), progress=False, n_workers=1)
    source = Path(json.loads((lm / "config.json").read_text())["data"]["source"])
    assert source.parent == cache_root() / "texts" and source.suffix == ".jsonl"
    assert [json.loads(line)["text"] for line in source.read_text(encoding="utf-8").splitlines()] == texts
    before = source.stat().st_mtime_ns
    capsys.readouterr()
    # the same texts as an array: the same file, left as it was; given again, their tokens are cached
    finetune_lm(lm, np.array(texts), tmp_path / "ft", train_cfg={"epochs": 1}, progress=True, n_workers=1)
    assert json.loads((tmp_path / "ft" / "config.json").read_text())["data"]["source"] == str(source)
    assert source.stat().st_mtime_ns == before and "using cached tokens" not in "".join(capsys.readouterr())
    finetune_lm(lm, texts, tmp_path / "ft2", train_cfg={"epochs": 1}, progress=True, n_workers=1)
    assert "using cached tokens" in "".join(capsys.readouterr())
    # other texts, one with a newline inside: a file of their own, one text a line
    finetune_lm(lm, texts[:50] + ["two\nlines"], tmp_path / "ft3", train_cfg={"epochs": 1, "bs": 4}, progress=False,
                n_workers=1)
    other = Path(json.loads((tmp_path / "ft3" / "config.json").read_text())["data"]["source"])
    assert other != source and json.loads(other.read_text(encoding="utf-8").splitlines()[-1]) == {"text": "two\nlines"}
    # an interrupted run on texts in memory resumes without them
    assert finetune_lm(None, None, tmp_path / "ft3", resume=True, extend={"epochs": 2}, progress=False)["out"]
    with pytest.raises(UlmfitError, match=r"the target text\[1\] is NoneType None, not a string"):
        finetune_lm(lm, ["a text", None], tmp_path / "bad", progress=False)
    with pytest.raises(UlmfitError, match="the target text is empty: no text"):
        finetune_lm(lm, [], tmp_path / "bad", progress=False)
    with pytest.raises(UlmfitError, match="read as they are"):
        finetune_lm(lm, texts, tmp_path / "bad", fmt="csv", column="review", progress=False)
    with pytest.raises(UlmfitError, match=r"lone surrogate"):
        finetune_lm(lm, ["caf\udce9"], tmp_path / "bad", progress=False)

    class Frame(list):  # what a pandas DataFrame looks like to as_texts: iterating it gives column names
        columns, iloc = ["text"], None

    with pytest.raises(UlmfitError, match=r"not a table: give its column of texts, e.g. df\['text'\]"):
        finetune_lm(lm, Frame(["text"]), tmp_path / "bad", progress=False)
    assert not (tmp_path / "bad").exists()


def test_texts_in_memory_are_checked_before_they_are_used_up_or_written(tmp_path, corpus, monkeypatch):
    """A generator is read once: a call the out folder refuses must not use it up, and a resume
    given the used-up generator again goes on without it. Held-out texts may be in memory too; a
    dict, texts all blank and a cache that cannot be written are refused by name; a numpy seed works."""
    import numpy as np

    from ulmfit.io import cache_root

    texts = [t for t in corpus.read_text(encoding="utf-8").splitlines() if t.strip()]
    lm = tmp_path / "lm"
    lm.mkdir()
    (lm / "notes.txt").write_text("mine")
    gen, held_out = (t for t in texts[:150]), (t for t in texts[150:])
    with pytest.raises(UlmfitError, match="already holds files"):
        pretrain(gen, lm, preset="tiny", train_cfg=cfg(epochs=1), progress=False)
    with pytest.raises(UlmfitError, match="already holds files"):  # a held-out generator is kept as well
        pretrain(corpus, lm, preset="tiny", train_cfg=cfg(epochs=1), valid=held_out, progress=False)
    assert next(held_out) == texts[150]
    res = pretrain(gen, tmp_path / "lm2", preset="tiny", train_cfg=cfg(epochs=1), valid=texts[150:], progress=False,
                   n_workers=1)  # the generator was not used up by the refused call; held-out texts in memory
    saved = json.loads((tmp_path / "lm2" / "config.json").read_text())["data"]
    assert Path(saved["valid_source"]).parent == cache_root() / "texts" and res["valid_loss"] > 0
    assert pretrain(gen, tmp_path / "lm2", resume=True, extend={"epochs": 2}, progress=False)["out"]  # used up: not given
    with pytest.raises(UlmfitError, match="is empty: no text \\(a generator that an earlier call used up"):
        finetune_lm(tmp_path / "lm2", gen, tmp_path / "ft", progress=False)
    with pytest.raises(UlmfitError, match="all 3 texts are empty or blank"):
        finetune_lm(tmp_path / "lm2", ["", " ", "\n"], tmp_path / "ft", progress=False)
    with pytest.raises(UlmfitError, match="not a dict \\(which gives its keys\\)"):
        finetune_lm(tmp_path / "lm2", {"text": texts}, tmp_path / "ft", progress=False)
    assert not (tmp_path / "ft").exists() and not list((cache_root() / "texts").glob(".*.tmp"))
    (tmp_path / "afile").write_text("x")
    monkeypatch.setenv("ULMFIT_CACHE", str(tmp_path / "afile"))
    with pytest.raises(UlmfitError, match="cannot make the cache folder .*set ULMFIT_CACHE to a folder"):
        finetune_lm(tmp_path / "lm2", texts, tmp_path / "ft", progress=False)
    lm2 = LanguageModel.load(tmp_path / "lm2")
    assert lm2.generate("the", n_tokens=4, seed=np.int64(3)) == lm2.generate("the", n_tokens=4, seed=3)
    with pytest.raises(UlmfitError, match="seed must be a whole number"):
        lm2.generate("the", seed=1.5)
