"""Data-parallel pretraining under torchrun: processes stay in sync and process 0 saves."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def _torchrun(tmp_path, corpus, cfg_args: str):
    """Pretrain the tiny preset in 2 processes; each prints its weights' hash, tokens, steps and budget."""
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun not installed")
    script = tmp_path / "train.py"
    script.write_text(
        "import hashlib, os, sys, torch\n"
        "from ulmfit.api import pretrain\n"
        "from ulmfit.train.loop import LMTrainConfig, LMTrainer\n"
        "from ulmfit.train import distributed as d\n"
        "orig = LMTrainer.fit\n"
        "def fit(self):\n"
        "    r = orig(self)\n"
        "    h = hashlib.sha256(b''.join(p.detach().numpy().tobytes() for p in self.model.parameters()))\n"
        # one os.write per line: both processes share the pipe, and print() writes a line in pieces
        "    os.write(1, f'RANK {d.rank_world()[0]} {h.hexdigest()} {self.tokens} {self.step} "
        "{self._budget_batches()}\\n'.encode())\n"
        "    return r\n"
        "LMTrainer.fit = fit\n"
        f"cfg = LMTrainConfig({cfg_args})\n"
        "pretrain(sys.argv[1], sys.argv[2], preset='tiny', train_cfg=cfg, progress=False, n_workers=1, device='cpu')\n"
        # the group must close before the interpreter's exit: gloo threads left to it can abort the process
        "d.shutdown()\n"
        "tasks = '/proc/self/task'\n"
        "names = [open(f'{tasks}/{t}/comm').read() for t in os.listdir(tasks)] if os.path.isdir(tasks) else []\n"
        "os.write(1, f\"GLOO_THREADS {sum('gloo' in n for n in names)}\\n\".encode())\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node=2", str(script), str(corpus),
                        str(tmp_path / "lm")], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("GLOO_THREADS 0") == 2, r.stdout  # both processes' gloo threads ended
    lines = sorted(l.split() for l in r.stdout.splitlines() if l.startswith("RANK"))
    assert [l[1] for l in lines] == ["0", "1"]
    assert lines[0][2] == lines[1][2]  # identical weights in both processes
    assert lines[0][3:] == lines[1][3:]  # tokens counted over both processes, same steps
    return lines[0]


def test_two_processes_train_one_model(tmp_path, corpus):
    line = _torchrun(tmp_path, corpus, "epochs=1, bs=4, bptt=16, lr=1e-2, lr_div=1.0, save_every_minutes=1e9, "
                                       "max_minutes=10")
    state = json.loads((tmp_path / "lm" / "train_state.json").read_text())
    assert state["tokens"] == int(line[3]) and state["step"] == int(line[4])
    n_tokens = json.loads((tmp_path / "lm" / "config.json").read_text())["data"]["n_tokens"]
    assert state["tokens"] > 0.8 * n_tokens * 0.9  # one epoch of the training part, split over 2 processes


def test_token_budget_over_two_processes_ends_with_the_schedule(tmp_path, corpus):
    # max_tokens counts both processes' tokens; the slanted triangular schedule must be sized to
    # the steps that budget allows, or the run stops near the peak rate instead of at the floor
    line = _torchrun(tmp_path, corpus, "epochs=3, bs=4, bptt=16, lr=1e-2, lr_div=1.0, save_every_minutes=1e9, "
                                       "max_minutes=10, max_tokens=3000, log_every=1")
    steps, budget = int(line[4]), int(line[5])
    assert 3000 <= int(line[3]) < 3000 + 2 * 4 * 64  # stopped by the budget, within one step of it
    assert steps == budget
    lrs = [json.loads(l)["lr"] for l in (tmp_path / "lm" / "metrics.jsonl").read_text().splitlines()
           if "lr" in json.loads(l)]
    assert lrs and lrs[-1] < 0.25 * max(lrs)  # the last rate is near the floor, not near the peak


def test_the_command_line_under_torchrun_speaks_once_and_keeps_its_process_count(tmp_path, corpus):
    """Process 0 prints for all; a run is resumed only with the number of processes that trained it;
    commands that do not train across processes refuse torchrun (they would run twice, side by side)."""
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun not installed")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ULMFIT_CACHE": str(tmp_path / "cache")}
    two = [str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "ulmfit"]
    small = ["--preset", "tiny", "--epochs", "1", "--bs", "4", "--bptt", "16", "--workers", "1", "--quiet"]
    (tmp_path / "lm").mkdir()  # made beforehand: process 0 holds it from the start, the others do not ask
    r = subprocess.run([*two, "pretrain", str(corpus), "--out", str(tmp_path / "lm"), *small],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert not (tmp_path / "lm" / ".ulmfit-run.lock").exists()
    assert r.stderr.count("language model saved to") == 1  # --quiet: on stderr, from process 0 alone
    assert json.loads((tmp_path / "lm" / "train_state.json").read_text())["world"] == 2
    r = subprocess.run([sys.executable, "-m", "ulmfit", "pretrain", "--resume", str(tmp_path / "lm"), "--epochs", "2",
                        "--quiet"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2 and "was trained by 2 process(es), this run has 1" in r.stderr
    (tmp_path / "l.csv").write_text("text,label\n" + "".join(f"t {i},{i % 2}\n" for i in range(20)))
    r = subprocess.run([*two, "train-classifier", str(tmp_path / "l.csv"), "--lm", str(tmp_path / "lm"), "--out",
                        str(tmp_path / "c")], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode != 0 and r.stderr.count("train-classifier (a small model") == 1, r.stderr[-2000:]
    assert not (tmp_path / "c").exists()


def test_process_0_saves_when_its_partner_is_killed_alone(tmp_path, corpus):
    """A worker killed on its own (out of memory, kill -9): process 0 saves the run at its last whole
    step and says so, whichever comes first, its failed all-reduce or torchrun's SIGTERM to the
    survivors, and the job resumes from there."""
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun not installed")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ULMFIT_CACHE": str(tmp_path / "cache")}
    lm = tmp_path / "lm"
    args = ["pretrain", str(corpus), "--out", str(lm), "--preset", "tiny", "--epochs", "3", "--bs", "4", "--bptt",
            "16", "--workers", "1", "--quiet"]
    two = [str(torchrun), "--standalone", "--nproc_per_node=2"]
    # the command line, with process 1 killing itself (SIGKILL, as the kernel's OOM killer does) at a
    # fixed step of the second epoch, while process 0 trains on: no race with the end of the run
    script = tmp_path / "killed.py"
    script.write_text(
        "import os, signal\n"
        "from ulmfit.train.loop import LMTrainer\n"
        "if os.environ['RANK'] == '1':\n"
        "    orig = LMTrainer.set_lrs\n"
        "    def set_lrs(self, *a, **k):\n"
        "        if self.epoch == 1 and self.batch == 3:\n"
        "            os.kill(os.getpid(), signal.SIGKILL)\n"
        "        return orig(self, *a, **k)\n"
        "    LMTrainer.set_lrs = set_lrs\n"
        "from ulmfit.cli import main\n"
        "raise SystemExit(main())\n"
    )
    p = subprocess.run([*two, str(script), *args], capture_output=True,
                       text=True, env={**env, "ULMFIT_JEMALLOC": "0"}, timeout=300)  # no re-exec without the patch
    assert p.returncode != 0
    err = p.stderr
    state = json.loads((lm / "train_state.json").read_text())
    assert state["step"] > 0 and state["world"] == 2
    assert (state["epoch"], state["batch"]) == (1, 3)  # the last step both processes finished
    assert (f"everything up to step {state['step']} is saved" in err or f"interrupted at step {state['step']};" in err) \
        and "--resume" in err, err[-3000:]
    r = subprocess.run([*two, "-m", "ulmfit", "pretrain", "--resume", str(lm), "--quiet"], capture_output=True,
                       text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((lm / "train_state.json").read_text())["epoch"] == 3
