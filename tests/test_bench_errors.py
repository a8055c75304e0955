"""bench/errors.py sets ULMFiT's test errors beside the TF-IDF baseline's; its counts must be the
set arithmetic they claim, or the BBC News paragraph of BENCHMARKS.md says nothing."""

import pytest


@pytest.fixture(scope="module")
def er(load_bench):
    return load_bench("errors")


def test_compare_counts_shared_and_own_errors_and_the_systematic_ones(er):
    y = ["a", "a", "b", "b", "c", "c"]
    base = ["a", "b", "b", "b", "c", "a"]  # wrong on 1 and 5
    ens = {0: ["a", "b", "a", "b", "b", "c"],  # wrong on 1 (shared), 2 and 4 (own)
           1: ["a", "a", "a", "b", "c", "c"]}  # wrong on 2 (own)
    r = er.compare(y, ens, base)
    assert r["baseline_errors"] == 2
    assert r["per_seed"][0] == {"errors": 3, "shared": 1, "ulmfit_only": 2, "baseline_only": 1, "accuracy": 0.5}
    assert r["per_seed"][1] == {"errors": 1, "shared": 0, "ulmfit_only": 1, "baseline_only": 2,
                                "accuracy": pytest.approx(5 / 6)}
    assert r["ulmfit_only_every_seed"] == [2]  # only text 2 is ULMFiT's own error with both seeds
    assert r["ulmfit_only_confusions"] == {"b -> a": 2, "c -> b": 1}


def test_overlap_finds_a_near_copy_and_ignores_short_texts(er):
    train = ["the bank raised its interest rates again on monday after a long meeting of the board",
             "a completely different story about football and the cup final"]
    test = ["the bank raised its interest rates again on monday after a long meeting of the board today",
            "football",  # fewer than 8 words: no 8-grams
            "nothing here matches any training text at all in eight words"]
    ov = er.overlap(train, test)
    assert ov[0] == pytest.approx(9 / 10)  # 9 of its 10 8-grams are in the first training text
    assert ov[1] == 0.0 and ov[2] == 0.0


def test_missing_classifiers_are_named_before_any_work(er, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(er.A, "WORK", tmp_path)
    monkeypatch.setattr(er.A, "_maybe_jemalloc", lambda: None)
    monkeypatch.setattr(er.A, "load_dataset", lambda ds: pytest.fail("no data is loaded without the models"))
    with pytest.raises(SystemExit):
        er.main(["--dataset", "bbc-news", "--seeds", "0"])
    err = capsys.readouterr().err
    assert "no classifier in" in err and "clf-main-fwd-s0" in err and "--seeds 0 --methods" in err
