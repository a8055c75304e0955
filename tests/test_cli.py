"""The `ulmfit` command as a user runs it: help, a full pretrain -> fine-tune -> eval -> generate
round, and clear errors (exit code 2, one line, no traceback) on bad input."""

import json
import re
import os
import subprocess
import sys

import pytest

from ulmfit.cli import main

COMMANDS = ["pretrain", "finetune-lm", "lm-eval", "generate", "lr-find", "export"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_a_complete_help(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "usage: ulmfit " + command in out
    for opt in {"pretrain": ["--preset", "--tokenizer", "--resume", "--max-tokens", "--backwards", "--lr"],
                "finetune-lm": ["--from", "--freeze-epochs", "--resume", "--lr-div"],
                "lm-eval": ["--model"], "generate": ["--temperature", "--model"], "lr-find": ["--model", "--num"],
                "export": ["--dtype", "--card"]}[command]:
        assert opt in out


def test_every_option_of_every_command_says_what_it_does():
    import argparse

    from ulmfit.cli import build_parser

    missing = []

    def walk(parser, name):
        for act in parser._actions:
            if isinstance(act, argparse._SubParsersAction):
                for sub, sp in act.choices.items():
                    walk(sp, f"{name} {sub}")
            elif act.option_strings and not act.help and not isinstance(act, (argparse._HelpAction,
                                                                               argparse._VersionAction)):
                missing.append(f"{name} {act.option_strings[0]}")

    walk(build_parser(), "ulmfit")
    assert not missing


def test_the_whole_language_model_round_from_the_command_line(tmp_path, corpus, capsys):
    lm, ft = tmp_path / "lm", tmp_path / "ft"
    small = ["--bs", "8", "--bptt", "16", "--quiet", "--workers", "1"]
    assert main(["pretrain", str(corpus), "--out", str(lm), "--preset", "tiny", "--epochs", "2", "--lr", "1e-2",
                 *small]) == 0
    # with --quiet, standard output is the JSON summary alone (`| jq`); the saved-to line is on stderr
    out = capsys.readouterr()
    assert json.loads(out.out)["out"] == str(lm) and f"language model saved to {lm}" in out.err
    assert main(["finetune-lm", "--from", str(lm), str(corpus), "--out", str(ft), "--epochs", "1", *small]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["out"] == str(ft) and f"saved to {ft}" in out.err
    assert main(["lm-eval", "--model", str(ft), str(corpus), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["generate", "--model", str(ft), "The dog", "--tokens", "8", "--seed", "0"]) == 0
    assert capsys.readouterr().out.startswith("The dog")
    assert main(["lr-find", "--model", str(lm), str(corpus), "--num", "20", "--bs", "8", "--bptt", "16",
                 "--quiet", "--workers", "1"]) == 0
    assert (lm / "lr_find.png").read_bytes()[:4] == b"\x89PNG"
    for f in ("config.json", "model.safetensors", "vocab.txt", "metrics.jsonl", "train_state.json"):
        assert (ft / f).exists()


def test_lm_eval_prints_perplexity_as_json(tmp_path, corpus, capsys):
    main(["pretrain", str(corpus), "--out", str(tmp_path / "lm"), "--preset", "tiny", "--epochs", "1", "--bs", "8",
          "--bptt", "16", "--quiet", "--workers", "1"])
    capsys.readouterr()
    assert main(["lm-eval", "--model", str(tmp_path / "lm"), str(corpus), "--quiet"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert set(res) >= {"loss", "perplexity", "accuracy", "bits_per_token"}


@pytest.mark.parametrize("argv, message", [
    (["pretrain", "{tmp}/missing.txt", "--out", "{tmp}/o"], "missing.txt"),
    (["pretrain", "{tmp}/empty.txt", "--out", "{tmp}/o"], "no non-empty document"),
    (["pretrain", "{tmp}/bad.txt", "--out", "{tmp}/o"], "--encoding"),
    (["lm-eval", "{tmp}/empty.txt", "--model", "{tmp}"], "not a ulmfit model directory"),
    (["generate", "hi", "--model", "{tmp}/nope"], "not a model directory"),
    (["pretrain", "--resume", "{tmp}"], "cannot resume"),
    (["finetune-lm", "--out", "{tmp}/o"], "give TEXTS"),
    (["finetune-lm", "{tmp}/empty.txt", "--from", "{tmp}/nope", "--out", "{tmp}/o"], "not a model directory"),
    (["demo", "--lm-epochs", "0", "--out", "{tmp}/o"], "--lm-epochs must be at least 1"),
    # a drop-mult that scales a dropout probability to 1 or more (a traceback from PyTorch before)
    (["pretrain", "{tmp}/empty.txt", "--drop-mult", "5", "--out", "{tmp}/o"], "drop_mult must be below 4 here"),
    (["train-classifier", "{tmp}/empty.txt", "--drop-mult", "2.5", "--out", "{tmp}/o"],
     "drop_mult must be below 2 here"),
    # a language model's held-out share: 0 validated on a handful of tokens, 1 trained on next to nothing
    (["pretrain", "{tmp}/empty.txt", "--valid-frac", "1", "--out", "{tmp}/o"], "must be above 0 and below 1, not 1.0"),
    (["finetune-lm", "{tmp}/empty.txt", "--valid-frac", "0", "--out", "{tmp}/o"], "must be above 0 and below 1"),
    (["pretrain", "{tmp}/empty.txt", "--lr", "inf", "--out", "{tmp}/o"], "lr must be a finite number, not inf"),
    (["train-classifier", "{tmp}/empty.txt", "--stage-lrs", "inf", "1", "1", "1", "--out", "{tmp}/o"],
     "stage_lrs[0] must be a finite number above 0, not inf"),
])
def test_bad_input_gets_a_clear_one_line_error(tmp_path, capsys, argv, message):
    (tmp_path / "empty.txt").write_text("\n  \n")
    (tmp_path / "bad.txt").write_bytes(b"good line\n\xff\xfe broken \x81 bytes\n")
    code = main([a.format(tmp=tmp_path) for a in argv])
    err = capsys.readouterr().err
    assert code == 2
    last = err.strip().split("\n")[-1]  # progress bars may come before it
    assert last.startswith("error: ") and message in last
    assert "Traceback" not in err


def test_export_writes_a_half_precision_copy_without_training_state(tmp_path, corpus, capsys):
    main(["pretrain", str(corpus), "--out", str(tmp_path / "lm"), "--preset", "tiny", "--epochs", "1", "--bs", "8",
          "--bptt", "16", "--quiet", "--workers", "1"])
    card = tmp_path / "card.md"
    card.write_text("# a model card")
    assert main(["export", str(tmp_path / "lm"), "--out", str(tmp_path / "ship"), "--card", str(card)]) == 0
    files = sorted(p.name for p in (tmp_path / "ship").iterdir())
    assert files == ["README.md", "config.json", "metrics.jsonl", "model.safetensors", "vocab.txt"]
    from ulmfit.api import LanguageModel

    a, b = LanguageModel.load(tmp_path / "lm"), LanguageModel.load(tmp_path / "ship")
    assert abs(a.perplexity(["The cat likes the red ball."]) - b.perplexity(["The cat likes the red ball."])) < 0.05
    assert (tmp_path / "ship" / "model.safetensors").stat().st_size < 0.6 * (tmp_path / "lm" / "model.safetensors").stat().st_size


def test_the_installed_entry_point_runs(tmp_path):
    r = subprocess.run([sys.executable, "-m", "ulmfit", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("ulmfit ")


def test_a_corpus_tokenised_once_trains_without_its_source(tmp_path, corpus, capsys):
    tok = tmp_path / "tokens"
    assert main(["corpus", "tokenize", str(corpus), "--out", str(tok), "--quiet", "--workers", "1"]) == 0
    corpus.unlink()  # training must not need the text any more
    assert main(["pretrain", str(tok), "--out", str(tmp_path / "lm"), "--preset", "tiny", "--epochs", "1",
                 "--bs", "8", "--bptt", "16", "--quiet"]) == 0
    cfg = json.loads((tmp_path / "lm" / "config.json").read_text())
    assert cfg["data"]["fmt"] == "token-cache" and cfg["tokenizer"]["kind"] == "word"
    assert main(["pretrain", "--resume", str(tmp_path / "lm"), "--epochs", "2", "--quiet"]) == 0


def test_corpus_tokenize_keeps_another_corpus_tokens_unless_told(tmp_path, corpus, capsys):
    tok = tmp_path / "tokens"
    args = ["corpus", "tokenize", str(corpus), "--out", str(tok), "--quiet", "--workers", "1"]
    assert main(args) == 0
    before = {p.name: p.read_bytes() for p in tok.iterdir() if p.is_file()}
    assert main(args) == 0  # the same corpus and settings: reused
    capsys.readouterr()
    # other settings: refused, and the folder is as it was
    assert main(args + ["--min-freq", "1"]) == 2
    err = capsys.readouterr().err
    assert "already holds tokens of another corpus, other settings or other tokeniser rules" in err and "--overwrite" in err
    assert {p.name: p.read_bytes() for p in tok.iterdir() if p.is_file()} == before
    (tok / "NOTES.md").write_text("mine")  # --overwrite replaces the tokens, never what a user put beside them
    assert main(args + ["--min-freq", "1", "--overwrite"]) == 2
    assert "holds other files besides its tokens" in capsys.readouterr().err and (tok / "NOTES.md").exists()
    (tok / "NOTES.md").unlink()
    assert main(args + ["--min-freq", "1", "--overwrite"]) == 0
    assert json.loads((tok / "meta.json").read_text())["tokenizer"]["min_freq"] == 1


def test_jemalloc_keeps_pages_unless_the_user_configured_it(monkeypatch):
    from ulmfit import cli

    monkeypatch.setattr(cli, "find_jemalloc", lambda: "/lib/libjemalloc.so.2")
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    monkeypatch.delenv("MALLOC_CONF", raising=False)
    env = cli.jemalloc_env()
    assert env["LD_PRELOAD"] == "/lib/libjemalloc.so.2"
    assert env["MALLOC_CONF"] == "dirty_decay_ms:-1,muzzy_decay_ms:-1"
    monkeypatch.setenv("MALLOC_CONF", "dirty_decay_ms:10000")
    assert cli.jemalloc_env()["MALLOC_CONF"] == "dirty_decay_ms:10000"
    monkeypatch.setenv("LD_PRELOAD", "/lib/libjemalloc.so.2")
    assert cli.jemalloc_env() is None  # already loaded: no second re-exec


def test_the_jemalloc_restart_runs_the_command_as_it_was_started_not_from_the_current_folder(tmp_path, monkeypatch):
    from pathlib import Path

    from ulmfit import cli

    monkeypatch.setattr(sys, "orig_argv", ["python3", "-W", "error", "/venv/bin/ulmfit", "predict", "x.txt"])
    assert cli.reexec_argv(["predict", "x.txt"]) == [sys.executable, "-W", "error", "/venv/bin/ulmfit", "predict", "x.txt"]
    monkeypatch.setattr(sys, "orig_argv", ["python3", "something", "else"])  # sys.argv was changed
    argv = cli.reexec_argv(["predict", "x.txt"])
    assert argv[1] == "-c" and "sys.path.pop(0)" in argv[2] and argv[3:] == ["predict", "x.txt"]
    ran = []
    monkeypatch.setattr(cli, "jemalloc_env", lambda: {})
    monkeypatch.setattr(cli.os, "execve", lambda path, argv, env: ran.append(argv))
    monkeypatch.delenv("_ULMFIT_REEXEC", raising=False)
    for value, restarts in (("0", False), (" Off", False), ("no", False), ("false", False), ("", True), ("1", True)):
        monkeypatch.setenv("ULMFIT_JEMALLOC", value)  # "off" loaded jemalloc all the same
        ran.clear()
        cli.maybe_reexec_with_jemalloc(["predict", "x.txt"])
        assert bool(ran) == restarts, value
    monkeypatch.undo()
    script = Path(sys.executable).parent / "ulmfit"
    if cli.find_jemalloc() is None or not script.exists():
        pytest.skip("no jemalloc here (or no ulmfit script): the command is never restarted")
    # `python -m ulmfit` put the current folder first on the import path: its numpy.py ran
    (tmp_path / "numpy.py").write_text("import sys\nsys.stderr.write('the numpy.py of the folder ran')\nsys.exit(99)\n")
    env = {k: v for k, v in os.environ.items() if k not in ("ULMFIT_JEMALLOC", "_ULMFIT_REEXEC", "LD_PRELOAD")}
    r = subprocess.run([str(script), "predict", "x.txt", "--model", "nowhere"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "nowhere" in r.stderr and "numpy.py of the folder" not in r.stderr, r.stderr


def test_a_rank_left_in_the_environment_outside_torchrun_does_not_silence_a_command(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setenv("RANK", "1")  # some clusters set it; it hid every message and error
    assert main(["predict", str(tmp_path / "x.txt"), "--model", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err
    from ulmfit.io import is_main_process

    assert is_main_process()
    for name, value in (("WORLD_SIZE", "abc"), ("RANK", "x")):
        monkeypatch.setenv("WORLD_SIZE", "2" if name == "RANK" else value)
        monkeypatch.setenv("RANK", value if name == "RANK" else "0")
        assert main(["predict", str(tmp_path / "x.txt"), "--model", str(tmp_path / "nowhere")]) == 2
        assert f"the environment variable {name}={value!r} is not a whole number" in capsys.readouterr().err


def test_allocator_env_for_children_without_jemalloc_is_a_clear_error(monkeypatch):
    from ulmfit import cli
    from ulmfit.io import UlmfitError

    monkeypatch.setattr(cli, "find_jemalloc", lambda: None)
    env = cli.allocator_env(None, {"LD_PRELOAD": "/lib/libjemalloc.so.2", "MALLOC_CONF": "x", "HOME": "/h"})
    assert env == {"HOME": "/h", "ULMFIT_JEMALLOC": "0"}  # glibc: the preload and its settings are gone
    with pytest.raises(UlmfitError, match="jemalloc not found"):
        cli.allocator_env("dirty_decay_ms:-1")


@pytest.fixture
def tiny_lm(tmp_path, corpus, capsys):
    lm = tmp_path / "lm"
    assert main(["pretrain", str(corpus), "--out", str(lm), "--preset", "tiny", "--epochs", "1", "--bs", "8",
                 "--bptt", "16", "--quiet", "--workers", "1"]) == 0
    capsys.readouterr()
    return lm


def test_export_refuses_a_folder_that_holds_files_unless_told_to_overwrite(tmp_path, tiny_lm, capsys):
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    assert main(["export", str(tiny_lm), "--out", str(other)]) == 2
    assert "already holds files" in capsys.readouterr().err
    assert (other / "notes.txt").read_text() == "keep me" and not (other / "config.json").exists()
    # over a training run: --overwrite replaces it and drops the training state that no longer matches
    run = tmp_path / "run"
    assert main(["finetune-lm", "--from", str(tiny_lm), str(tmp_path / "corpus.txt"), "--out", str(run),
                 "--epochs", "1", "--bs", "8", "--bptt", "16", "--quiet", "--workers", "1"]) == 0
    assert main(["export", str(tiny_lm), "--out", str(run), "--overwrite"]) == 0
    assert not (run / "train_state.json").exists() and not (run / "train_state.safetensors").exists()
    (tmp_path / "file.txt").write_text("x")
    assert main(["export", str(tiny_lm), "--out", str(tmp_path / "file.txt")]) == 2
    assert "is a file" in capsys.readouterr().err


def test_saved_files_follow_the_umask_not_owner_only(tiny_lm):
    from ulmfit import io

    for name in ("config.json", "model.safetensors", "vocab.txt"):
        assert (tiny_lm / name).stat().st_mode & 0o777 == 0o666 & ~io._UMASK
    # the token cache's folder too (it was 0700 whatever the umask: a group's shared cache was unreadable)
    from ulmfit.io import cache_root

    folders = [d for d in (cache_root() / "corpora").iterdir() if d.is_dir() and not d.name.startswith(".")]
    assert folders and all(d.stat().st_mode & 0o777 == 0o777 & ~io._UMASK for d in folders)


@pytest.mark.parametrize("argv", [
    ["predict", "--model", "m", "--bs", "0"],
    ["evaluate", "t.csv", "--model", "m", "--bs", "-1"],
    ["train-classifier", "t.csv", "--out", "o", "--bs", "-3"],
    ["generate", "hi", "--model", "m", "--top-k", "-1"],
    ["generate", "hi", "--model", "m", "-n", "0"],
    ["pretrain", "t.txt", "--out", "o", "--tokenizer", "subword", "--sp-vocab", "0"],
    ["predict", "--model", "m", "--threshold", "1.5"],
    ["finetune-lm", "t.txt", "--out", "o", "--bptt", "0"],
    ["pretrain", "t.txt", "--out", "o", "--max-vocab", "5"],  # it built a vocabulary of special tokens only
    ["corpus", "tokenize", "t.txt", "--out", "o", "--min-freq", "0"],
    ["finetune-lm", "t.txt", "--out", "o", "--max-vocab", "-1"],
])
def test_sizes_below_one_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "must be" in err and "Traceback" not in err


def test_output_paths_that_are_files_or_folders_get_one_line_errors(tmp_path, tiny_lm, capsys):
    (tmp_path / "new.txt").write_text("x")
    code = main(["finetune-lm", "--from", str(tiny_lm), str(tmp_path / "corpus.txt"), "--out",
                 str(tmp_path / "new.txt"), "--quiet", "--workers", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "is a file" in err.strip().splitlines()[-1] and "Traceback" not in err
    code = main(["lr-find", "--model", str(tiny_lm), str(tmp_path / "corpus.txt"), "--out", str(tmp_path),
                 "--num", "5", "--bs", "8", "--bptt", "16", "--quiet", "--workers", "1"])
    err = capsys.readouterr().err  # refused before the range test, not after it
    assert code == 2 and "is a folder; give a file name for the plot" in err and "Traceback" not in err


def test_lr_find_checks_its_rates_and_gives_no_suggestion_where_the_loss_diverged_at_once(tmp_path, tiny_lm, capsys):
    args = ["lr-find", "--model", str(tiny_lm), str(tmp_path / "corpus.txt"), "--bs", "8", "--bptt", "16", "--quiet",
            "--workers", "1", "--out", str(tmp_path / "p.png")]
    assert main(args + ["--start-lr", "1", "--end-lr", "1e-5"]) == 2
    assert "goes up from --start-lr to --end-lr" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(args + ["--start-lr", "0"])
    assert "--start-lr: must be above 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(args + ["--num", "-5"])
    capsys.readouterr()
    assert main(args + ["--start-lr", "1e2", "--end-lr", "1e6", "--num", "20"]) == 0
    out = capsys.readouterr().out  # it used to print "too few steps" and draw "suggested 1.0e+02", the diverging rate
    assert "no suggestion: the loss diverged after" in out and "suggested" not in out
    from ulmfit.train.lr_find import suggest

    assert suggest([1e-3, 1e-2, 1e-1], [5.0, 9.0, 40.0])["suggestion"] is None
    lrs = [10 ** (-6 + i / 2) for i in range(12)]
    losses = [5, 4.9, 4.8, 4.5, 4.0, 3.0, 2.5, 2.4, 2.6, 3.0, 4.0, float("nan")]
    assert suggest(lrs, losses)["min_loss_lr"] == pytest.approx(lrs[7] / 10)  # a NaN is no minimum


def test_lm_eval_reads_a_token_folder_made_for_the_model_and_refuses_one_of_another_vocabulary(
        tmp_path, tiny_lm, corpus, capsys):
    text = tmp_path / "held.txt"
    text.write_text("".join(corpus.read_text().splitlines(keepends=True)[:40]))
    assert main(["corpus", "tokenize", str(text), "--out", str(tmp_path / "tok"), "--vocab-from", str(tiny_lm),
                 "--quiet"]) == 0
    from ulmfit import LanguageModel

    lm = LanguageModel.load(tiny_lm)
    a, b = lm.evaluate(source=text), lm.evaluate(source=tmp_path / "tok")  # the folder's ids, not its vocab.txt
    assert a["tokens"] == b["tokens"] and a["perplexity"] == pytest.approx(b["perplexity"], rel=1e-4)
    assert main(["lm-eval", "--model", str(tiny_lm), str(tmp_path / "tok"), "--quiet"]) == 0
    assert main(["corpus", "tokenize", str(text), "--out", str(tmp_path / "own"), "--quiet"]) == 0
    assert main(["lm-eval", "--model", str(tiny_lm), str(tmp_path / "own"), "--quiet"]) == 2
    assert "tokens of another vocabulary than this model's" in capsys.readouterr().err


def test_finetune_lm_refuses_a_token_folder_instead_of_training_on_its_vocab_file(tmp_path, tiny_lm, corpus, capsys):
    """A `corpus tokenize` folder was read as a folder of .txt files: the target text became its
    vocab.txt, one document, and the run 'fine-tuned' on it."""
    assert main(["corpus", "tokenize", str(corpus), "--out", str(tmp_path / "tok"), "--quiet", "--workers", "1"]) == 0
    assert main(["finetune-lm", str(tmp_path / "tok"), "--from", str(tiny_lm), "--out", str(tmp_path / "ft"),
                 "--quiet", "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert "is a token folder" in err and f"give it the text ({corpus})" in err
    assert not (tmp_path / "ft").exists()


def test_a_token_folder_of_earlier_tokeniser_rules_is_named_as_such(tmp_path, corpus, capsys):
    """meta.json records the rules' version (none: version 1); pretrain on such a folder says that
    text tokenised now may differ, and `corpus tokenize` into it says why it refuses."""
    from ulmfit.data import cache
    from ulmfit.text.tokenize import TokenizerConfig

    tok = tmp_path / "tok"
    assert main(["corpus", "tokenize", str(corpus), "--out", str(tok), "--quiet", "--workers", "1"]) == 0
    meta = json.loads((tok / "meta.json").read_text())
    assert meta["rules"] >= 2
    del meta["rules"]  # as a version before 2 wrote it, under the key of its rules
    meta["key"] = cache.corpus_key(corpus.resolve(), TokenizerConfig(), fmt=meta["fmt"], rules=1)
    (tok / "meta.json").write_text(json.dumps(meta))
    capsys.readouterr()
    held = tmp_path / "held.txt"  # a held-out text, tokenised now (by today's rules) for this new run
    held.write_text("".join(corpus.read_text().splitlines(keepends=True)[:30]))
    assert main(["pretrain", str(tok), "--out", str(tmp_path / "lm"), "--preset", "tiny", "--epochs", "1", "--bs", "8",
                 "--bptt", "16", "--workers", "1", "--valid", str(held)]) == 0
    assert "was tokenised by the rules of an earlier ulmfit (version 1" in capsys.readouterr().out
    assert main(["corpus", "tokenize", str(corpus), "--out", str(tok), "--quiet", "--workers", "1"]) == 2
    assert "by the tokeniser rules of an earlier ulmfit, version 1)" in capsys.readouterr().err


def test_corpus_cache_lists_the_token_caches_and_removes_the_stale_ones(tmp_path, corpus, capsys):
    """Once a source is gone or edited, a cache is never used again: `ulmfit corpus cache` says which,
    and --remove-stale removes just those. One made by an earlier ulmfit's tokeniser rules is listed
    as such and kept: a run started before the upgrade resumes only on it."""
    from ulmfit.data.cache import build_corpus
    from ulmfit.io import cache_root
    from ulmfit.text.tokenize import TokenizerConfig

    others = []
    for name in ("gone.txt", "older.txt", "edited.txt"):
        (tmp_path / name).write_text(corpus.read_text()[: 5000 + len(others) * 100])
        others.append(build_corpus(tmp_path / name, TokenizerConfig(min_freq=1), progress=False)[0])
    build_corpus(corpus, TokenizerConfig(min_freq=1), progress=False)
    (tmp_path / "gone.txt").unlink()
    (tmp_path / "edited.txt").write_text("the text was edited afterwards\n")
    folders = {json.loads(m.read_text())["source"]: m.parent for m in (cache_root() / "corpora").glob("*/meta.json")}
    meta = json.loads((folders[str(tmp_path / "older.txt")] / "meta.json").read_text())
    del meta["rules"]  # as made by a version before the rules were kept
    (folders[str(tmp_path / "older.txt")] / "meta.json").write_text(json.dumps(meta))
    (cache_root() / "corpora" / "0123456789abcdef").mkdir()  # a cache without a meta.json
    capsys.readouterr()
    assert main(["corpus", "cache"]) == 0
    out = capsys.readouterr().out
    assert "stale: no readable meta.json" in out and "5 cache(s)" in out
    assert "stale: its source is gone" in out and "stale: its source has changed since" in out
    assert out.count("(current") == 1 and "(made by the tokeniser rules of an earlier ulmfit (version 1): new runs " \
        "tokenise again, a run started before the upgrade resumes on it" in out
    assert "--remove-stale" in out and "kept for runs started before the upgrade" in out
    # a run started before the upgrade resumes only on its older tokens: --remove-stale keeps them
    assert main(["corpus", "cache", "--remove-stale"]) == 0
    assert capsys.readouterr().out.count("  removed") == 3
    assert sorted(p.parent for p in (cache_root() / "corpora").glob("*/meta.json")) == sorted(
        [folders[str(corpus.resolve())], folders[str(tmp_path / "older.txt")]])
    # texts given in memory (Python) are listed, and --remove-all removes them with the caches
    from ulmfit.api import texts_or_path

    kept = texts_or_path(["a text in memory", "another"], "the texts")[0]
    assert main(["corpus", "cache"]) == 0
    assert "1 text file(s) given in memory to pretrain or finetune_lm" in capsys.readouterr().out and kept.exists()
    assert main(["corpus", "cache", "--remove-all"]) == 0 and "removed 2" in capsys.readouterr().out
    assert not kept.exists()
    assert main(["corpus", "cache"]) == 0 and "no token caches" in capsys.readouterr().out


def test_resume_says_which_given_options_it_ignores(tmp_path, corpus, capsys):
    lm = tmp_path / "lm"
    assert main(["pretrain", str(corpus), "--out", str(lm), "--preset", "tiny", "--epochs", "1", "--bs", "8",
                 "--bptt", "16", "--quiet", "--workers", "1"]) == 0
    capsys.readouterr()
    assert main(["pretrain", str(corpus), "--resume", str(lm), "--epochs", "2", "--bs", "4", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "ignored: --bs" in err and "--epochs" not in err.split("ignored:")[1]  # CORPUS: where the data is
    # a value given equal to the default is given all the same: the run keeps its own (--bs 8 here)
    assert main(["pretrain", "--resume", str(lm), "--epochs", "3", "--bs", "64", "--lr=0.003", "--quiet"]) == 0
    ignored = capsys.readouterr().err.split("ignored: ")[1].split("\n")[0].split(", ")
    assert sorted(ignored) == ["--bs", "--lr"]


def test_a_model_with_damaged_weights_or_config_is_refused_on_load(tmp_path, tiny_lm):
    import shutil

    from safetensors.torch import load_file, save_file

    from ulmfit import checkpoint as ckpt
    from ulmfit.io import UlmfitError

    bad = tmp_path / "nan"
    shutil.copytree(tiny_lm, bad)
    t = load_file(str(bad / "model.safetensors"))
    k = next(iter(t))
    t[k][0] = float("nan")
    save_file(t, str(bad / "model.safetensors"), metadata={"format": ckpt.FORMAT, "step": "0"})
    with pytest.raises(UlmfitError, match="NaN or infinite"):
        ckpt.load_model(bad)
    cfg = json.loads((tiny_lm / "config.json").read_text())
    cfg["tokenizer"] = 5
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UlmfitError, match="'tokenizer' section is int"):
        ckpt.read_config(tmp_path / "cfg")


def test_a_folder_a_live_run_trains_into_is_refused_to_every_other_writer(tmp_path, tiny_lm, held, capsys):
    from ulmfit.demo import run_demo
    from ulmfit.io import OUT_LOCK, UlmfitError, claim_out, release_out

    before = {p.name: p.read_bytes() for p in tiny_lm.iterdir() if p.name != OUT_LOCK}
    holder = held(tiny_lm)
    for argv in (["pretrain", "--resume", str(tiny_lm)],
                 ["pretrain", str(tmp_path / "corpus.txt"), "--out", str(tiny_lm), "--overwrite", "--preset", "tiny"],
                 ["finetune-lm", "--from", str(tiny_lm), str(tmp_path / "corpus.txt"), "--out", str(tiny_lm),
                  "--overwrite"],
                 ["export", str(tmp_path / "nowhere"), "--out", str(tiny_lm), "--overwrite"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert f"{tiny_lm} is in use: process {holder.pid}" in err and f"kill -TERM {holder.pid}" in err, argv
    with pytest.raises(UlmfitError, match="is in use"):  # the demo holds its folder as well
        run_demo(out=tiny_lm, progress=False)
    # reading it goes on, with a warning that the weights are those of the last checkpoint
    assert main(["export", str(tiny_lm), "--out", str(tmp_path / "copy")]) == 0
    assert f"is still being trained (process {holder.pid}" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in tiny_lm.iterdir() if p.name != OUT_LOCK} == before
    # a holder that dies, however it dies, holds nothing: the kernel drops its lock
    holder.kill()
    holder.wait()
    assert claim_out(tiny_lm)
    release_out(tiny_lm)
    assert not (tiny_lm / OUT_LOCK).exists()


def test_a_run_whose_folder_was_moved_releases_only_its_own_lock(tmp_path, held):
    from ulmfit.io import OUT_LOCK, claim_out, out_in_use, release_out

    x = tmp_path / "x"
    x.mkdir()
    assert claim_out(x)
    x.rename(tmp_path / "y")  # the folder moved away while its run goes on, and another run took the name
    x.mkdir()
    holder = held(x)
    release_out(x)  # the first run ends: it used to remove the new run's lock file, letting a third one in
    assert (x / OUT_LOCK).exists() and out_in_use(x) == f"process {holder.pid} (on {os.uname().nodename})"
    assert not (tmp_path / "y" / OUT_LOCK).exists() or out_in_use(tmp_path / "y") is None


def test_a_run_holds_its_folder_while_it_trains_and_leaves_no_lock_behind(tmp_path, corpus, monkeypatch, capsys):
    from ulmfit import api
    from ulmfit.io import OUT_LOCK, out_in_use

    seen = []
    save = api.ckpt.save_model
    monkeypatch.setattr(api.ckpt, "save_model", lambda out, *a, **k: (seen.append(out_in_use(out)), save(out, *a, **k)))
    out = tmp_path / "new" / "lm"  # a folder the run makes: held from when it is made
    assert main(["pretrain", str(corpus), "--out", str(out), "--preset", "tiny", "--epochs", "1", "--bs", "8",
                 "--bptt", "16", "--quiet", "--workers", "1"]) == 0
    assert seen and set(seen) == {"this process"}
    assert out_in_use(out) is None and not (out / OUT_LOCK).exists()
    # a run that fails on its inputs leaves neither the lock nor a new empty folder
    (tmp_path / "empty.txt").write_text("")
    assert main(["pretrain", str(tmp_path / "empty.txt"), "--out", str(tmp_path / "o"), "--preset", "tiny"]) == 2
    assert not (tmp_path / "o").exists()
    (tmp_path / "e").mkdir()
    assert main(["pretrain", str(tmp_path / "empty.txt"), "--out", str(tmp_path / "e"), "--preset", "tiny"]) == 2
    assert list((tmp_path / "e").iterdir()) == []


def test_no_command_is_a_usage_error(capsys):
    assert main([]) == 2
    assert "usage: ulmfit" in capsys.readouterr().err
    assert main(["data"]) == 2


def test_an_out_folder_that_takes_no_files_is_refused_before_training(tmp_path, tiny_lm, capsys, monkeypatch):
    """A read-only mount (simulated: this may run as root, whom permissions do not stop) fails at
    the start with a one-line error, not at the first save after the training time is spent."""
    import errno

    real_open = os.open

    def read_only(path, *a, **k):
        if os.path.basename(str(path)).startswith(".ulmfit-write-test"):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, *a, **k)

    csv = tmp_path / "labeled.csv"
    csv.write_text("text,label\n" + "".join(f"a {'good' if i % 2 else 'bad'} dog {i},{'pos' if i % 2 else 'neg'}\n"
                                           for i in range(40)))
    ro = tmp_path / "ro"
    ro.mkdir()
    monkeypatch.setattr(os, "open", read_only)
    for argv in (["finetune-lm", "--from", str(tiny_lm), str(tmp_path / "corpus.txt"), "--epochs", "1"],
                 ["pretrain", str(tmp_path / "corpus.txt"), "--preset", "tiny", "--epochs", "1"],
                 ["train-classifier", str(csv), "--lm", str(tiny_lm)]):
        code = main([*argv, "--out", str(ro), "--quiet", "--workers", "1"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and err[-1] == f"error: cannot write into --out {ro} (Read-only file system); choose a " \
                                         "folder you can write to", argv
        assert ro.is_dir() and not any(ro.iterdir())
    monkeypatch.setattr(os, "open", real_open)
    if os.geteuid() != 0:  # a real folder without write permission
        ro.chmod(0o500)
        try:
            assert main(["finetune-lm", "--from", str(tiny_lm), str(tmp_path / "corpus.txt"), "--out", str(ro),
                         "--quiet", "--workers", "1"]) == 2
            assert "cannot write into --out" in capsys.readouterr().err
        finally:
            ro.chmod(0o700)


def test_pretrain_validates_on_a_held_out_text_given_by_valid(tmp_path, corpus, capsys):
    from conftest import make_corpus

    from ulmfit.api import pretrain
    from ulmfit.io import UlmfitError

    held = make_corpus(tmp_path / "held.txt", n_docs=20, seed=7)
    lm = tmp_path / "lm"
    assert main(["pretrain", str(corpus), "--out", str(lm), "--preset", "tiny", "--epochs", "1", "--bs", "8",
                 "--bptt", "16", "--quiet", "--workers", "1", "--valid", str(held)]) == 0
    cfg = json.loads((lm / "config.json").read_text())
    assert cfg["data"]["valid_source"] == str(held.resolve())
    # the validation set is that text, tokenised as the model reads it (not a slice of the corpus)
    from ulmfit.api import LanguageModel

    ids = LanguageModel.load(lm, device="cpu").encode(held.read_text().splitlines())
    assert cfg["data"]["valid_tokens"] == sum(len(x) for x in ids)
    with pytest.raises(UlmfitError, match="give the held-out text once"):
        pretrain(corpus, tmp_path / "lm2", preset="tiny", valid=held, valid_source=held, progress=False)


def test_every_option_with_a_default_says_it_in_its_help():
    import argparse

    from ulmfit.cli import build_parser

    def walk(p, path):
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                for name, sub in a.choices.items():
                    yield from walk(sub, path + [name])
            else:
                yield path, a

    silent = [f"{' '.join(path)} {'/'.join(a.option_strings) or a.dest} (default {a.default!r})"
              for path, a in walk(build_parser(), [])
              if a.default not in (None, False, argparse.SUPPRESS) and a.help not in (None, argparse.SUPPRESS)
              and not isinstance(a, (argparse._HelpAction, argparse._VersionAction))
              and "default" not in a.help.lower()]
    assert not silent, silent


def test_a_validation_text_tokenised_with_the_corpus_vocabulary_validates_a_pretraining_run(tmp_path, corpus, capsys):
    from conftest import make_corpus

    held = make_corpus(tmp_path / "held.txt", n_docs=20, seed=3)
    assert main(["corpus"]) == 2 and "ACTION" in capsys.readouterr().err  # no action: usage, as `ulmfit` alone
    assert main(["corpus", "tokenize", str(corpus), "--out", str(tmp_path / "tok"), "--workers", "1", "--quiet"]) == 0
    assert "train on it with `ulmfit pretrain" in capsys.readouterr().out
    assert main(["corpus", "tokenize", str(held), "--out", str(tmp_path / "tok-valid"), "--vocab-from",
                 str(tmp_path / "tok"), "--workers", "1", "--quiet"]) == 0
    assert f"--valid {tmp_path / 'tok-valid'}" in capsys.readouterr().out
    vocab = (tmp_path / "tok" / "vocab.txt").read_text()
    assert (tmp_path / "tok-valid" / "vocab.txt").read_text() == vocab
    small = ["--preset", "tiny", "--epochs", "1", "--bs", "8", "--bptt", "16", "--quiet", "--workers", "1"]
    assert main(["pretrain", str(tmp_path / "tok"), "--out", str(tmp_path / "lm"), "--valid",
                 str(tmp_path / "tok-valid"), *small]) == 0
    assert json.loads((tmp_path / "lm" / "config.json").read_text())["data"]["valid_source"] == \
        str((tmp_path / "tok-valid").resolve())
    # tokenised on its own, the held-out text has a vocabulary of its own: refused, not misread
    assert main(["corpus", "tokenize", str(held), "--out", str(tmp_path / "own"), "--workers", "1", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["pretrain", str(tmp_path / "tok"), "--out", str(tmp_path / "lm2"), "--valid", str(tmp_path / "own"),
                 *small]) == 2
    assert "another vocabulary" in capsys.readouterr().err


def test_standard_output_in_a_locale_that_cannot_encode_a_label_is_written_in_utf8():
    """A label like 'très_bon 😀' printed under an ASCII locale ended predict in UnicodeEncodeError;
    piped or redirected, standard output is now UTF-8, as --out files are."""
    env = {k: v for k, v in os.environ.items() if k not in ("LANG", "LC_ALL", "LC_CTYPE", "PYTHONIOENCODING")}
    env.update(LC_ALL="C", PYTHONUTF8="0", PYTHONCOERCECLOCALE="0")  # Python's own fixes for the C locale, off
    # written with escapes: the -c argument itself is read in the locale
    code = "from ulmfit.cli import _stdout_that_encodes_any_text as f; {} print('tr\\u00e8s_bon \\U0001F600')"
    before = subprocess.run([sys.executable, "-c", code.format("")], capture_output=True, env=env)
    if before.returncode == 0:
        pytest.skip("this Python writes UTF-8 to standard output in the C locale anyway")
    assert b"UnicodeEncodeError" in before.stderr
    after = subprocess.run([sys.executable, "-c", code.format("f();")], capture_output=True, env=env)
    assert after.returncode == 0 and after.stdout.decode("utf-8") == "très_bon 😀\n", after.stderr
    # a file name that is not UTF-8 (Python holds its byte as a surrogate escape) is printed, not fatal
    name = subprocess.run([sys.executable, "-c", code.replace("tr\\u00e8s_bon \\U0001F600", "lat\\udce9.csv")
                           .format("f();")], capture_output=True, env=env)
    assert name.returncode == 0 and name.stdout == b"lat\\udce9.csv\n", name.stderr


def test_a_standard_stream_closed_by_the_shell_is_read_as_empty_not_a_traceback():
    # `ulmfit predict - <&-` gave AttributeError on sys.stdin.buffer, `>&-` a TypeError from csv
    code = ("import sys; from ulmfit.cli import _closed_streams_as_devnull as f; {}"
            "sys.stdout.write(repr(sys.stdin.buffer.read())); sys.stderr.write('said')")
    for fd in (0, 1, 2):
        before, after = (subprocess.run([sys.executable, "-c", code.format(call)], capture_output=True, timeout=60,
                                        stdin=subprocess.DEVNULL, preexec_fn=lambda fd=fd: os.close(fd))
                         for call in ("", "f(); "))
        assert before.returncode == 1 or fd == 2  # stderr alone: Python writes nowhere without failing
        assert after.returncode == 0 and after.stdout == {0: b"b''", 1: b"", 2: b"b''"}[fd]
        assert after.stderr == (b"" if fd == 2 else b"said"), after.stderr


def test_running_out_of_memory_is_an_error_line_with_what_to_change_not_a_traceback(monkeypatch, capsys):
    import argparse

    from ulmfit import cli

    for exc in (MemoryError(), RuntimeError("[enforce fail at alloc_cpu.cpp:118] DefaultCPUAllocator: can't allocate "
                                            "memory: you tried to allocate 1073741824 bytes")):
        def fn(_, exc=exc):
            raise exc

        assert cli._run_command(None, argparse.Namespace(fn=fn), 0, 1) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: out of memory (") and "smaller --bs" in err and "--resume" in err
    with pytest.raises(RuntimeError, match="something else"):  # other runtime errors stay tracebacks (bugs)
        cli._run_command(None, argparse.Namespace(fn=lambda _: (_ for _ in ()).throw(RuntimeError("something else"))),
                         0, 1)


def test_a_pythonioencoding_that_cannot_encode_a_label_writes_an_escape_not_a_traceback():
    code = "from ulmfit.cli import _stdout_that_encodes_any_text as f; {} print('tr\\u00e8s_bon \\u6807')"
    for chosen, says in (("latin-1", "très_bon \\u6807\n"), ("latin-1:replace", "très_bon ?\n")):
        env = {**os.environ, "PYTHONIOENCODING": chosen}
        before = subprocess.run([sys.executable, "-c", code.format("")], capture_output=True, env=env)
        assert (b"UnicodeEncodeError" in before.stderr) == (chosen == "latin-1")
        after = subprocess.run([sys.executable, "-c", code.format("f();")], capture_output=True, env=env)
        assert after.returncode == 0 and after.stdout.decode("latin-1") == says, after.stderr


def test_a_shipped_model_is_named_by_its_name_and_lr_find_never_writes_into_the_package(tmp_path, monkeypatch,
                                                                                          capsys):
    from ulmfit.cli import _lm_dir
    from ulmfit.pretrained import WEIGHTS_DIR

    monkeypatch.chdir(tmp_path)
    assert _lm_dir("general-en-bwd") == str(WEIGHTS_DIR / "general-en-bwd")
    assert _lm_dir("some/folder") == "some/folder"
    from ulmfit.cli import build_parser

    p = build_parser()  # every option that takes a language model
    assert p.parse_args(["pretrain", "c.txt", "--init-from", "general-en-fwd"]).init_from == \
        str(WEIGHTS_DIR / "general-en-fwd")
    assert p.parse_args(["corpus", "tokenize", "c.txt", "--out", "t", "--vocab-from", "general-en-bwd"]).vocab_from \
        == str(WEIGHTS_DIR / "general-en-bwd")
    assert p.parse_args(["finetune-lm", "c.txt", "--from", "general-en-bwd"]).from_dir == str(WEIGHTS_DIR / "general-en-bwd")
    assert p.parse_args(["train-classifier", "l.csv", "--lm", "general-en-fwd"]).lm == str(WEIGHTS_DIR / "general-en-fwd")
    (tmp_path / "general-en-fwd").mkdir()
    assert _lm_dir("general-en-fwd") == "general-en-fwd"  # a folder of that name, here, wins
    (tmp_path / "general-en-fwd").rmdir()
    (tmp_path / "t.txt").write_text("".join(f"The film was good and the cast was great {i}.\n" for i in range(200)))
    before = sorted(p.name for p in (WEIGHTS_DIR / "general-en-fwd").iterdir())
    assert main(["lr-find", "--model", "general-en-fwd", "t.txt", "--num", "5", "--bs", "4", "--bptt", "8",
                 "--quiet", "--workers", "1"]) == 0
    assert "plot written to lr_find-general-en-fwd.png" in capsys.readouterr().out
    assert (tmp_path / "lr_find-general-en-fwd.png").exists()
    assert sorted(p.name for p in (WEIGHTS_DIR / "general-en-fwd").iterdir()) == before


def test_lr_find_beside_a_read_only_model_keeps_its_suggestion_and_says_where_to_write(tmp_path, tiny_lm,
                                                                                        monkeypatch, capsys):
    import ulmfit.train.lr_find as lf

    def read_only(res, out):
        raise PermissionError(13, "Permission denied", str(out))

    monkeypatch.setattr(lf, "plot_lr_find", read_only)
    args = ["lr-find", "--model", str(tiny_lm), str(tmp_path / "corpus.txt"), "--num", "20", "--bs", "8", "--bptt",
            "16", "--quiet", "--workers", "1"]
    assert main(args) == 0  # the range test's result is its suggestion, printed before the plot
    got = capsys.readouterr()
    assert "could not write the plot beside the model" in got.err and "--out FILE" in got.err
    assert main(args + ["--out", str(tmp_path / "p.png")]) == 2  # a place the user chose: an error
    assert "could not write the plot to" in capsys.readouterr().err
    # a folder known to be read-only is said before the test's minutes, not after them
    ran, real_access, real_find = [], os.access, lf.lr_find
    monkeypatch.setattr(os, "access", lambda p, mode, **k: False if mode == os.W_OK else real_access(p, mode, **k))
    monkeypatch.setattr(lf, "lr_find", lambda *a, **k: ran.append(1) or real_find(*a, **k))
    assert main(args + ["--out", str(tmp_path / "p.png")]) == 2 and not ran
    assert "cannot write into" in capsys.readouterr().err
    assert main(args) == 0 and ran
    got = capsys.readouterr()
    assert "cannot write the plot beside the model" in got.err and "suggested learning rate" in got.out


def test_the_python_api_takes_a_shipped_model_by_its_name_too(tmp_path, tiny_lm, corpus, monkeypatch):
    import shutil

    import ulmfit.pretrained as pre
    from ulmfit import LanguageModel
    from ulmfit.api import finetune_lm, lm_eval

    shipped = tmp_path / "weights"  # an installation whose shipped forward model is the tiny one
    shutil.copytree(tiny_lm, shipped / "general-en-fwd")
    monkeypatch.setattr(pre, "WEIGHTS_DIR", shipped)
    monkeypatch.chdir(tmp_path)
    assert LanguageModel.load("general-en-fwd").path == shipped / "general-en-fwd"
    assert lm_eval("general-en-fwd", str(corpus), bs=4, bptt=16, progress=False)["perplexity"] > 1
    finetune_lm("general-en-fwd", str(corpus), tmp_path / "ft", progress=False, n_workers=1,
                train_cfg={"epochs": 1, "bs": 8, "bptt": 16})
    saved = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert saved["finetuned_from"] == str((shipped / "general-en-fwd").resolve())
    assert pre.resolve_model("no/such/folder") == "no/such/folder" and pre.resolve_model(None) is None


def test_exit_statuses_follow_the_readme(capsys):
    import argparse
    import errno

    from ulmfit.cli import _run_command
    from ulmfit.io import UlmfitError

    def fails(exc):
        def fn(_):
            raise exc
        return argparse.Namespace(fn=fn)

    assert _run_command(None, fails(UlmfitError("bad input")), 0, 1) == 2
    assert _run_command(None, fails(OSError(errno.ENOSPC, "No space left on device")), 0, 1) == 2
    assert "error: [Errno 28] No space left on device" in capsys.readouterr().err
    assert _run_command(None, fails(KeyboardInterrupt()), 0, 1) == 130
    with pytest.raises(ZeroDivisionError):  # an unexpected failure keeps its traceback (exit 1)
        _run_command(None, fails(ZeroDivisionError()), 0, 1)


def test_a_language_model_run_that_diverges_before_its_first_save_leaves_nothing_of_itself(tmp_path, tiny_lm,
                                                                                         corpus, capsys):
    small = ["--bs", "8", "--bptt", "16", "--quiet", "--workers", "1", "--lr", "1e10", "--freeze-lr", "1e10"]
    assert main(["finetune-lm", "--from", str(tiny_lm), str(corpus), "--out", str(tmp_path / "ft"), *small]) == 2
    err = capsys.readouterr().err
    assert "the loss became nan" in err and "nothing was saved. Train again with a lower --lr" in err
    assert not (tmp_path / "ft").exists()  # it held a metrics.jsonl alone: neither resumable nor free
    before = {p.name: p.read_bytes() for p in tiny_lm.iterdir() if p.name != ".ulmfit-run.lock"}
    assert main(["finetune-lm", "--from", str(tiny_lm), str(corpus), "--out", str(tiny_lm), "--overwrite",
                 *small]) == 2
    assert "the run that --overwrite was to replace is back" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in tiny_lm.iterdir() if p.name != ".ulmfit-run.lock"} == before


def test_finetune_refuses_a_drop_mult_that_makes_a_dropout_probability_reach_1(tmp_path, tiny_lm, corpus, capsys):
    assert main(["finetune-lm", "--from", str(tiny_lm), str(corpus), "--out", str(tmp_path / "ft"), "--drop-mult",
                 "5", "--quiet", "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert "error: drop_mult: drop_mult must be below 4 here" in err and "Traceback" not in err
    assert not (tmp_path / "ft").exists()


def test_a_run_killed_before_its_first_save_neither_blocks_a_rerun_nor_is_resumed(tmp_path, tiny_lm, corpus, capsys):
    """SIGKILL after finetune-lm's first metrics line (or during its first save) left a folder that
    --resume called a finished model and a plain rerun called taken."""
    ft = tmp_path / "ft"
    ft.mkdir()
    (ft / "metrics.jsonl").write_text('{"step": 0, "epoch": 0, "valid_loss": 5.0}\n')
    (ft / ".model.safetensors.ab12cd34.tmp").write_bytes(b"half a save")
    (ft / ".ulmfit-run.lock").write_text("")
    assert main(["finetune-lm", "--resume", str(ft), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "holds no saved run (the run stopped before its first save" in err
    assert "note: removed .model.safetensors.ab12cd34.tmp, metrics.jsonl from" in err  # nothing to keep
    (ft / "metrics.jsonl").write_text('{"step": 0, "epoch": 0, "valid_loss": 5.0}\n')  # killed again
    (ft / ".ulmfit-run.lock").write_text("12345 elsewhere\n")  # as a killed run leaves its lock file
    small = ["--bs", "8", "--bptt", "16", "--quiet", "--workers", "1", "--epochs", "1"]
    assert main(["finetune-lm", "--from", str(tiny_lm), str(corpus), "--out", str(ft), *small]) == 0
    assert "note: removed metrics.jsonl from" in capsys.readouterr().err
    assert not list(ft.glob(".*.tmp")) and (ft / "config.json").exists()
    # the temporary files of a save cut short are swept when a run resumes there too; others' stay
    (ft / ".train_state.json.zz99yy88.tmp").write_text("{")
    (ft / ".notes.txt.ab12cd34.tmp").write_text("not ours")
    assert main(["finetune-lm", "--resume", str(ft), "--epochs", "2", "--quiet"]) == 0
    assert sorted(p.name for p in ft.glob(".*.tmp")) == [".notes.txt.ab12cd34.tmp"]


def test_sigterm_while_a_command_reads_its_data_ends_it_as_ctrl_c_does(tmp_path, corpus):
    """Not only inside the training loops: SIGTERM during tokenising or loading killed the process
    on the spot (exit 143, no message, the folder's lock left behind)."""
    script = tmp_path / "term.py"
    script.write_text(
        "import os, signal, time, sys\n"
        "import ulmfit.api as api\n"
        "def pretrain(*a, **k):\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    time.sleep(30)\n"
        "api.pretrain = pretrain\n"
        "from ulmfit.cli import main\n"
        "sys.argv[0] = 'ulmfit'\n"
        "raise SystemExit(main())\n")
    r = subprocess.run([sys.executable, str(script), "pretrain", str(corpus), "--out", str(tmp_path / "o"),
                        "--preset", "tiny", "--quiet"], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "ULMFIT_JEMALLOC": "0"})
    assert r.returncode == 130 and r.stderr.strip().splitlines()[-1] == "interrupted", r.stderr[-2000:]


def test_a_batch_size_that_leaves_an_epoch_a_step_or_two_is_warned_about(tmp_path, corpus, capsys):
    assert main(["pretrain", str(corpus), "--out", str(tmp_path / "lm"), "--preset", "tiny", "--epochs", "1",
                 "--bs", "500", "--bptt", "16", "--workers", "1"]) == 0
    err = capsys.readouterr().err
    assert re.search(r"warning: --bs 500 splits the [\d,]+ training tokens into streams of about \d+ tokens: \d steps? "
                     r"an epoch, too few to learn much; a smaller --bs \(about \d+\)", err), err
    assert main(["pretrain", str(corpus), "--out", str(tmp_path / "lm2"), "--preset", "tiny", "--epochs", "1",
                 "--bs", "8", "--bptt", "16", "--workers", "1"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_models_and_data_show_a_summary_and_errors_render_as_one_line_in_ipython(tmp_path, tiny_lm):
    from ulmfit import LanguageModel
    from ulmfit.data.labeled import LabeledTexts
    from ulmfit.io import TrainingInterrupted, UlmfitError

    d = LabeledTexts([f"text {i} " * 50 for i in range(1000)], ["pos", "neg"] * 500, "mine")
    assert repr(d) == "LabeledTexts('mine': 1,000 texts, 2 labels {'neg': 500, 'pos': 500})"  # not every text
    assert repr(LanguageModel.load(tiny_lm)).startswith(f"LanguageModel({str(tiny_lm)!r}: AWD-LSTM 32/64/2, ")
    assert UlmfitError("bad input")._render_traceback_() == ["UlmfitError: bad input"]  # no stack in a notebook
    assert TrainingInterrupted("saved")._render_traceback_() == ["TrainingInterrupted: saved"]


def test_tokenizer_workers_leave_ctrl_c_to_the_parent():
    import signal

    from ulmfit.text import tokenize

    before = signal.getsignal(signal.SIGINT)
    try:
        tokenize._init_worker(tokenize.TokenizerConfig().to_dict(), None)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


def test_the_librarys_warnings_repeat_for_every_run_not_once_per_line():
    code = ("from ulmfit.io import warn\n"
            "for seed in range(3):  # e.g. a loop over seeds whose runs all go wrong\n"
            "    warn('the same news')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stderr.count("UlmfitWarning: the same news") == 3, r.stderr  # Python's default: once


def test_warnings_printed_beside_progress_bars_obey_the_users_filters():
    code = ("import warnings, sys\n"
            "from ulmfit.io import warn, UlmfitWarning\n"
            "warn('shown as a line', progress=True)\n"
            "warnings.filterwarnings('ignore', message='dropped')\n"
            "warn('dropped by its message', progress=True)\n"
            "warn('kept: another message', progress=True)\n"
            "warnings.filterwarnings('ignore', category=UlmfitWarning)\n"
            "warn('dropped by its category', progress=True)\n"
            "warnings.filterwarnings('once', message='twice')\n"
            "warn('twice, shown once', progress=True)\n"
            "warn('twice, shown once', progress=True)\n"
            "warnings.filterwarnings('error', message='raised')\n"
            "try:\n"
            "    warn('raised as the user asked', progress=True)\n"
            "except UlmfitWarning as e:\n"
            "    print('caught:', e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines() == ["warning: shown as a line", "warning: kept: another message",
                                     "warning: twice, shown once"]
    assert r.stdout == "caught: raised as the user asked\n"


def test_a_subword_model_fine_tuned_into_its_own_folder_with_overwrite(tmp_path, corpus, capsys):
    """Its spm.model, read at the first save, was set aside with the replaced run: the run failed."""
    lm = tmp_path / "lms"
    small = ["--bs", "8", "--bptt", "16", "--quiet", "--workers", "1", "--epochs", "1"]
    assert main(["pretrain", str(corpus), "--out", str(lm), "--preset", "tiny", "--tokenizer", "subword",
                 "--sp-vocab", "100", *small]) == 0
    assert main(["finetune-lm", "--from", str(lm), str(corpus), "--out", str(lm), "--overwrite", *small]) == 0, \
        capsys.readouterr().err
    assert json.loads((lm / "config.json").read_text())["finetuned_from"] == str(lm.resolve())
    assert not (lm / ".ulmfit-replaced").exists()


def test_a_killed_first_save_or_a_member_being_replaced_is_never_passed_over(tmp_path, tiny_lm, corpus, capsys):
    from ulmfit.api import clear_replaced_run

    ft = tmp_path / "ft"  # killed during its first save: best.safetensors had landed beside the metrics
    ft.mkdir()
    (ft / "metrics.jsonl").write_text("{}\n")
    (ft / "best.safetensors").write_bytes(b"x")
    (ft / ".eval_report.json.ab12cd34.tmp").write_text("an evaluate writing into the folder")  # not ours: stays
    (ft / ".ulmfit-run.lock").write_text("12345 elsewhere\n")  # the killed run's
    assert main(["finetune-lm", "--from", str(tiny_lm), str(corpus), "--out", str(ft), "--bs", "8", "--bptt", "16",
                 "--quiet", "--workers", "1", "--epochs", "1"]) == 2  # the evaluate's file is not a leftover
    assert "already holds files" in capsys.readouterr().err
    (ft / ".eval_report.json.ab12cd34.tmp").unlink()
    (ft / ".ulmfit-run.lock").write_text("12345 elsewhere\n")  # (the refused run removed the lock file it held)
    assert main(["finetune-lm", "--from", str(tiny_lm), str(corpus), "--out", str(ft), "--bs", "8", "--bptt", "16",
                 "--quiet", "--workers", "1", "--epochs", "1"]) == 0
    assert "removed best.safetensors, metrics.jsonl" in capsys.readouterr().err
    clear_replaced_run(ft)  # as a run with --overwrite does, before its first save
    assert main(["lm-eval", "--model", str(ft), str(corpus), "--quiet"]) == 2
    assert "holds no model now: a run with --overwrite is replacing it" in capsys.readouterr().err


def test_files_of_training_names_in_a_folder_no_run_of_ours_left_are_the_users(tmp_path, corpus, capsys):
    """Without a lock file left by a killed run, best.safetensors or metrics.jsonl are somebody else's."""
    u = tmp_path / "u"
    u.mkdir()
    (u / "best.safetensors").write_text("mine")
    (u / "metrics.jsonl").write_text("mine")
    assert main(["pretrain", str(corpus), "--out", str(u), "--preset", "tiny", "--epochs", "1", "--bs", "8",
                 "--bptt", "16", "--quiet", "--workers", "1"]) == 2
    assert "already holds files" in capsys.readouterr().err
    assert (u / "best.safetensors").read_text() == "mine" and (u / "metrics.jsonl").read_text() == "mine"


def test_the_umask_is_read_without_being_set_where_the_system_shows_it(monkeypatch):
    from ulmfit import io

    set_calls = []
    real = os.umask
    monkeypatch.setattr(os, "umask", lambda m: set_calls.append(m) or real(m))
    mask = io._read_umask()
    monkeypatch.undo()
    current = os.umask(0o022)
    os.umask(current)
    assert mask == current
    if os.path.exists("/proc/self/status"):
        assert set_calls == []  # setting it, even for a moment, left other threads' new files unmasked


def _run_in_a_terminal(argv: list[str], timeout: float = 120) -> tuple[int, bytes]:
    """(exit status, what `ulmfit ARGV` shows on a terminal): stdout and stderr both a pseudo-terminal."""
    import pty

    code = "import sys; from ulmfit.cli import main; sys.argv = ['ulmfit'] + sys.argv[1:]; sys.exit(main())"
    master, slave = pty.openpty()
    env = {**os.environ, "ULMFIT_JEMALLOC": "0"}
    proc = subprocess.Popen([sys.executable, "-c", code, *argv], stdin=subprocess.DEVNULL, stdout=slave,
                            stderr=slave, env=env)
    os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the child closed its end
            break
        if not chunk:
            break
        shown += chunk
    proc.wait(timeout=timeout)
    os.close(master)
    return proc.returncode, shown


def test_control_characters_from_data_or_a_model_reach_a_terminal_as_escapes(tmp_path, tiny_lm):
    """A label, a generated sample or a file name is text; ESC, BEL, CR in it are commands to a
    terminal (clear the screen, retitle the window, set the clipboard, rewrite the line). On a
    terminal they are printed as escapes; in a pipe or a file, as they are."""
    prompt = "\x1b]0;pwned\x07The \x1b[2J dog\rcat"
    rc, shown = _run_in_a_terminal(["generate", prompt, "--model", str(tiny_lm), "--tokens", "3", "--seed", "0"])
    assert rc == 0 and b"\\x1b]0;pwned\\x07The \\x1b[2J dog\\x0dcat" in shown, shown
    assert b"\x1b" not in shown and b"\x07" not in shown
    bad = str(tmp_path / "x\x1b[2J.csv")
    rc, shown = _run_in_a_terminal(["lm-eval", bad, "--model", str(tiny_lm)])
    assert rc == 2 and b"error: " in shown and b"x\\x1b[2J.csv" in shown and b"\x1b" not in shown, shown
    # every line on standard error, not only the error line: a warning naming the file, argparse's own
    text = tmp_path / "t\x1b]0;x\x07.csv"
    text.write_text("a dog ran\nthe cat sat\n")
    rc, shown = _run_in_a_terminal(["lm-eval", str(text), "--model", str(tiny_lm), "--bogus\x1b[2J"])
    assert rc == 2 and b"--bogus\\x1b[2J" in shown and b"\x1b" not in shown, shown
    # and a progress bar still redraws its line with carriage returns of its own, not escaped ones
    rc, shown = _run_in_a_terminal(["lm-eval", str(text), "--model", str(tiny_lm), "--format", "csv",
                                    "--column", "a dog ran"])
    assert rc == 0 and b"t\\x1b]0;x\\x07.csv" in shown and b"\x1b" not in shown and b"\x07" not in shown, shown
    assert b"\r" in shown.replace(b"\r\n", b"") and b"\\x0d" not in shown, shown
    piped = subprocess.run([sys.executable, "-m", "ulmfit", "generate", prompt, "--model", str(tiny_lm), "--tokens",
                            "3", "--seed", "0"], capture_output=True, env={**os.environ, "ULMFIT_JEMALLOC": "0"},
                           timeout=120)
    assert piped.returncode == 0 and piped.stdout.startswith(prompt.encode()), piped.stderr


def test_generate_separates_its_samples_and_a_training_run_says_why_a_closed_pipe_stopped_it(tmp_path, tiny_lm,
                                                                                                corpus, capsys):
    assert main(["generate", "The", "--model", str(tiny_lm), "--tokens", "3", "-n", "3", "--seed", "0"]) == 0
    samples = capsys.readouterr().out.rstrip("\n").split("\n---\n")
    assert len(samples) == 3 and all(s.startswith("The") for s in samples)  # no empty sample after the last
    # `ulmfit pretrain ... | head -1`: the reader leaves; the run stops with a line on stderr, not silently
    proc = subprocess.Popen([sys.executable, "-m", "ulmfit", "pretrain", str(corpus), "--out", str(tmp_path / "p"),
                             "--preset", "tiny", "--epochs", "1", "--bs", "8", "--bptt", "16", "--workers", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "ULMFIT_JEMALLOC": "0"})
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 1 and "stopped: standard output was closed" in err and "--resume" in err, err


def test_what_callers_catch_and_filter_is_named_at_the_top_without_importing_torch():
    code = ("import sys, ulmfit\n"
            "from ulmfit import UlmfitError, UlmfitWarning, TrainingInterrupted\n"
            "import ulmfit.io as io\n"
            "assert (UlmfitError, UlmfitWarning, TrainingInterrupted) == (io.UlmfitError, io.UlmfitWarning, "
            "io.TrainingInterrupted)\n"
            "assert set(ulmfit.__all__) >= {'UlmfitError', 'UlmfitWarning', 'TrainingInterrupted'}\n"
            "print('torch' in sys.modules)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout == "False\n", r.stderr
