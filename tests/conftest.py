import importlib.util
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _load_bench(name: str):
    """Import bench/<name>.py (the benchmarks are scripts, not a package) as module bench_<name>."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def load_bench():
    return _load_bench


@pytest.fixture(scope="session", autouse=True)
def _never_the_users_cache(tmp_path_factory):
    """Module and session fixtures run before `_isolated_cache`: they get the run's own cache, never
    the ~/.cache/ulmfit of whoever runs the tests."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ULMFIT_CACHE", str(tmp_path_factory.mktemp("run-cache")))
        # fp32 everywhere, so a test computes the same on every CI machine (the library picks bf16 by
        # timing it, which varies by CPU and by load); the bf16 path has its own tests, and
        # `ULMFIT_BF16=on python -m pytest` runs the whole suite in it
        if "ULMFIT_BF16" not in os.environ:
            mp.setenv("ULMFIT_BF16", "off")
        yield


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own token cache, so tests never see each other's corpora."""
    monkeypatch.setenv("ULMFIT_CACHE", str(tmp_path / "cache"))


def make_corpus(path, n_docs=200, seed=0):
    """A small text with real structure: sentences from a tiny grammar, one document per line."""
    rng = random.Random(seed)
    subj = ["The cat", "A dog", "My neighbour", "The old man", "Her sister", "The company", "This film"]
    verb = ["likes", "hates", "watches", "builds", "sells", "finds", "remembers"]
    obj = ["the red ball", "a small house", "many books", "the blue car", "some fresh bread", "an old movie"]
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(n_docs):
            f.write(" ".join(f"{rng.choice(subj)} {rng.choice(verb)} {rng.choice(obj)}."
                             for _ in range(rng.randint(3, 10))) + "\n")
    return path


@pytest.fixture
def corpus(tmp_path):
    return make_corpus(tmp_path / "corpus.txt")


@pytest.fixture
def held():
    """Hold a folder from another process, as a training run there does; yields (hold, pid)."""
    procs = []

    def hold(folder):
        p = subprocess.Popen([sys.executable, "-c", "import sys; from ulmfit.io import claim_out; "
                              "assert claim_out(sys.argv[1]); print('held', flush=True); sys.stdin.read()",
                              str(folder)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        procs.append(p)
        assert p.stdout.readline().strip() == "held"
        return p

    yield hold
    for p in procs:
        p.kill()
        p.wait()
