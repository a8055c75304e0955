"""bench/ab_speed.py times two checkouts alternately (A, B, A, B) so machine drift hits both alike."""

import pytest


def test_runs_alternate_between_the_two_checkouts_and_refuse_a_folder_without_the_package(load_bench, tmp_path):
    ab = load_bench("ab_speed")
    for name in ("a", "b"):
        (tmp_path / name / "src" / "ulmfit").mkdir(parents=True)
    seen = []

    def run(src, out):
        seen.append(src.parent.name)
        return {"lm_s": float(len(seen)), "clf_s": 1.0}

    rows = ab.compare(str(tmp_path / "a"), str(tmp_path / "b"), 2, run)
    assert seen == ["a", "b", "a", "b"]
    assert [(r["checkout"], r["run"], r["lm_s"]) for r in rows] == [("A", 0, 1.0), ("B", 0, 2.0), ("A", 1, 3.0),
                                                                    ("B", 1, 4.0)]
    with pytest.raises(SystemExit, match="has no src/ulmfit"):
        ab.compare(str(tmp_path / "a"), str(tmp_path), 1, run)
