"""bench/allocator_memory.py: the environment each allocator setting gets, and the RSS of a process tree.
(The measurement itself runs training jobs and is not run here.)"""

import os
import signal
import subprocess
import sys
import time

import pytest


@pytest.fixture(scope="module")
def am(load_bench):
    return load_bench("allocator_memory")


def test_each_setting_gets_its_allocator_and_nothing_else(am, monkeypatch):
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/libjemalloc.so.2 /opt/other.so")
    monkeypatch.setenv("MALLOC_CONF", "narenas:1")
    from ulmfit import cli

    monkeypatch.setattr(cli, "find_jemalloc", lambda: "/lib/libjemalloc.so.2")
    glibc = am.env_for("glibc")
    assert glibc["LD_PRELOAD"] == "/opt/other.so" and "MALLOC_CONF" not in glibc
    keep = am.env_for("keep")
    assert keep["LD_PRELOAD"].split() == ["/lib/libjemalloc.so.2", "/opt/other.so"]
    assert keep["MALLOC_CONF"] == am.JEMALLOC_CONF == "dirty_decay_ms:-1,muzzy_decay_ms:-1"
    assert am.env_for("decay")["MALLOC_CONF"].startswith("dirty_decay_ms:10000")
    assert all(am.env_for(a)["ULMFIT_JEMALLOC"] == "0" for a in ("glibc", "keep", "decay"))


def test_tree_rss_counts_the_children(am):
    # a parent that starts a child holding ~200 MB: the tree's RSS includes it
    code = ("import subprocess, sys; subprocess.run([sys.executable, '-c', "
            "\"b = bytearray(200 * 2**20); import time; time.sleep(30)\"])")
    p = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    try:
        deadline, rss = time.time() + 20, 0.0
        while time.time() < deadline and rss < 200:
            time.sleep(0.2)
            rss = am.tree_rss_mb(p.pid)
        assert rss >= 200
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()


def test_unknown_job_is_refused(am, tmp_path, monkeypatch):
    monkeypatch.setattr(am, "CACHE", tmp_path)
    (tmp_path / "datasets" / "rotten-tomatoes").mkdir(parents=True)
    (tmp_path / "datasets" / "rotten-tomatoes" / "train.csv").write_text("text,label\n")
    with pytest.raises(SystemExit, match="unknown job"):
        am.job_command("pretrain", tmp_path / "out", None)
    monkeypatch.setattr(am, "CACHE", tmp_path / "nothing")
    with pytest.raises(SystemExit, match="ulmfit data get rotten-tomatoes"):
        am.job_command("finetune-lm", tmp_path / "out", None)


def test_pretrain_job_runs_ulmfit_pretrain_for_the_given_minutes(am, tmp_path, monkeypatch):
    monkeypatch.setattr(am, "CACHE", tmp_path)
    with pytest.raises(SystemExit, match="ulmfit data get 20newsgroups"):
        am.job_command("pretrain:5", tmp_path / "out", None)
    (tmp_path / "datasets" / "20newsgroups").mkdir(parents=True)
    (tmp_path / "datasets" / "20newsgroups" / "train.csv").write_text("text,label\n")
    cmd = am.job_command("pretrain:5", tmp_path / "out", None)
    assert cmd[1:4] == ["-m", "ulmfit", "pretrain"]
    assert cmd[4] == str(tmp_path / "datasets" / "20newsgroups" / "train.csv")
    assert cmd[cmd.index("--max-minutes") + 1] == "5.0"
    assert cmd[cmd.index("--out") + 1] == str(tmp_path / "out")
