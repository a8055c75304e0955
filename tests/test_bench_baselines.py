"""bench/baselines.py: running a baseline in a child process with glibc's malloc (the SetFit memory fix).
Only scikit-learn's TF-IDF baseline is trained here; the optional packages are not needed."""

import pytest


@pytest.fixture(scope="module")
def bl(load_bench):
    return load_bench("baselines")


JE = "7f00-7f01 r-xp 00000000 08:01 1 /usr/lib/x86_64-linux-gnu/libjemalloc.so.2\n"
GLIBC = "7f00-7f01 r-xp 00000000 08:01 1 /usr/lib/x86_64-linux-gnu/libc.so.6\n"


def test_keeps_pages_only_under_jemalloc_without_purging(bl):
    assert bl.allocator_keeps_pages(JE, "dirty_decay_ms:-1,muzzy_decay_ms:-1")
    assert not bl.allocator_keeps_pages(JE, "")  # jemalloc's own decay: pages are returned
    assert not bl.allocator_keeps_pages(JE, "dirty_decay_ms:10000")
    assert not bl.allocator_keeps_pages(GLIBC, "dirty_decay_ms:-1")  # the setting means nothing to glibc


def test_isolated_run_gives_the_in_process_result_without_jemalloc(bl, monkeypatch):
    monkeypatch.setenv("LD_PRELOAD", "/nonexistent/libjemalloc.so.2")  # must not reach the child
    monkeypatch.setenv("MALLOC_CONF", "dirty_decay_ms:-1")
    x, y = bl._synthetic(40, seed=1)
    tx, _ = bl._synthetic(20, seed=2)
    here = bl.tfidf_lr(x, y, tx, 0)
    child = bl.run_isolated("tfidf", x, y, tx, 0)
    assert child["pred"] == here["pred"]
    assert child["note"] == here["note"]


def test_isolated_run_reports_the_childs_error(bl):
    x, y = bl._synthetic(10, seed=1)
    with pytest.raises(RuntimeError, match="10 training texts but 9 labels"):
        bl.run_isolated("tfidf", x, y[:9], x, 0)


def test_isolated_run_reports_a_killed_child(bl, tmp_path, monkeypatch):
    # a child that dies without writing its result, as under the out-of-memory killer
    script = tmp_path / "dies.py"
    script.write_text("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    monkeypatch.setattr(bl, "__file__", str(script))
    x, y = bl._synthetic(10, seed=1)
    with pytest.raises(RuntimeError, match="killed by signal 9"):
        bl.run_isolated("tfidf", x, y, x, 0)
