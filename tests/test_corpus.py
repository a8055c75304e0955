"""Corpus readers and the token cache (text -> tokens -> ids, tokenised once)."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from ulmfit.data import cache as cache_mod
from ulmfit.data.cache import TokenIds, build_corpus, encode_texts, load_corpus_dir
from ulmfit.data.corpus import iter_documents
from ulmfit.io import UlmfitError
from ulmfit.text.tokenize import SPECIAL_TOKENS, TokenizerConfig
from ulmfit.text.vocab import Vocab

# ---------------------------------------------------------------------------------------------
# Readers


def test_folder_gives_one_document_per_txt_file_in_sorted_order(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "2.txt").write_text("second")
    (tmp_path / "a.txt").write_text("first\nstill first")
    (tmp_path / "notes.md").write_text("ignored")
    (tmp_path / "empty.txt").write_text("  \n")
    assert list(iter_documents(tmp_path)) == ["first\nstill first", "second"]


def test_lines_gives_one_document_per_non_blank_line(tmp_path):
    f = tmp_path / "c.txt"
    f.write_text("one\n\n  two  \n\nthree")
    assert list(iter_documents(f)) == ["one", "two", "three"]


WIKI = """
 = Alpha =

 Alpha is a letter .

 = = History = =

 It is old .

 = Beta =

 Beta follows alpha .
"""


def test_wikitext_gives_one_document_per_article(tmp_path):
    f = tmp_path / "wiki.train.tokens"
    f.write_text(WIKI)
    docs = list(iter_documents(f))
    assert len(docs) == 2
    assert docs[0].startswith("= Alpha =") and "= = History = =" in docs[0] and "It is old" in docs[0]
    assert docs[1] == "= Beta =\nBeta follows alpha ."
    # detected from the content too, whatever the file name
    g = tmp_path / "wiki.txt"
    g.write_text(WIKI)
    assert list(iter_documents(g)) == docs


def test_csv_joins_several_columns_with_xxfld(tmp_path):
    f = tmp_path / "d.csv"
    f.write_text('label,title,body\n1,Hello,"World, with a comma\nand a newline"\n0,Bye,Now\n')
    assert list(iter_documents(f, column="title,body")) == [
        "Hello xxfld World, with a comma\nand a newline",
        "Bye xxfld Now",
    ]


def test_tsv_and_default_text_column(tmp_path):
    f = tmp_path / "d.tsv"
    f.write_text("text\tlabel\nfirst doc\t1\nsecond doc\t0\n")
    assert list(iter_documents(f)) == ["first doc", "second doc"]


def test_jsonl_reads_the_named_field(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps({"review": "good", "y": 1}) + "\n\n" + json.dumps({"review": "bad", "y": 0}) + "\n")
    assert list(iter_documents(f, column="review")) == ["good", "bad"]


@pytest.mark.parametrize("name,content", [
    ("d.csv", "title,body\na,b\n"),
    ("d.jsonl", '{"title": "a", "body": "b"}\n'),
])
def test_missing_column_lists_the_available_ones(tmp_path, name, content):
    f = tmp_path / name
    f.write_text(content)
    with pytest.raises(UlmfitError, match="text") as e:
        list(iter_documents(f))
    assert "title" in str(e.value) and "body" in str(e.value) and name in str(e.value)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(UlmfitError, match="nope.txt"):
        list(iter_documents(tmp_path / "nope.txt"))


def test_corpus_without_text_is_an_error(tmp_path):
    f = tmp_path / "blank.txt"
    f.write_text("\n  \n\n")
    with pytest.raises(UlmfitError, match="no non-empty document"):
        list(iter_documents(f))


@pytest.mark.parametrize("as_folder", [False, True])
def test_undecodable_bytes_name_the_file_line_and_encoding(tmp_path, as_folder):
    f = tmp_path / "latin.txt"
    f.write_bytes("fine line\ncaf\u00e9 au lait\n".encode("latin-1"))
    with pytest.raises(UlmfitError) as e:
        list(iter_documents(tmp_path if as_folder else f))
    msg = str(e.value)
    assert "latin.txt" in msg and "line 2" in msg and "utf-8" in msg and "--encoding" in msg
    docs = list(iter_documents(tmp_path if as_folder else f, encoding="latin-1"))
    assert "caf\u00e9 au lait" in docs[-1]


# ---------------------------------------------------------------------------------------------
# Token cache

TEXT = [
    "The cat sat on the mat.",
    "A dog ran in the park.",
    "<br />",  # no tokens once the markup is gone: skipped
    "THE CAT AND THE DOG!",
    "the cat and the dog and the cat",
]


@pytest.fixture
def corpus(tmp_path, monkeypatch):
    monkeypatch.setenv("ULMFIT_CACHE", str(tmp_path / "cache"))
    f = tmp_path / "c.txt"
    f.write_text("\n".join(TEXT) + "\n")
    return f


WORD = TokenizerConfig(min_freq=1)


def test_build_numericalises_every_document(corpus):
    data, sp = build_corpus(corpus, WORD, progress=False)
    assert sp is None
    assert data.n_docs() == 4  # the markup-only line is skipped
    assert data.ids.dtype == np.uint16
    assert data.vocab.textify(data.doc(0)) == ["xxbos", "xxmaj", "the", "cat", "sat", "on", "the", "mat", "."]
    assert data.n_tokens() == sum(len(data.doc(i)) for i in range(data.n_docs()))
    again = load_corpus_dir(data.path)
    assert np.array_equal(again.ids, data.ids) and again.vocab.itos == data.vocab.itos


def test_second_build_comes_from_the_cache(corpus, monkeypatch):
    first, _ = build_corpus(corpus, WORD, progress=False)

    def no_tokenizing(*a, **k):
        raise AssertionError("tokenised again")

    monkeypatch.setattr(cache_mod, "tokenize_parallel", no_tokenizing)
    second, _ = build_corpus(corpus, WORD, progress=False)
    assert second.path == first.path
    assert np.array_equal(second.ids, first.ids) and np.array_equal(second.offsets, first.offsets)


def test_another_tokenizer_config_or_changed_file_gets_another_cache(corpus):
    a, _ = build_corpus(corpus, WORD, progress=False)
    b, _ = build_corpus(corpus, TokenizerConfig(min_freq=2), progress=False)
    assert a.path != b.path and len(b.vocab) < len(a.vocab)
    corpus.write_text("Something else entirely.\n")
    c, _ = build_corpus(corpus, WORD, progress=False)
    assert c.path != a.path and c.n_docs() == 1


def test_given_vocab_is_used_and_unknown_words_are_xxunk(corpus):
    vocab = Vocab(SPECIAL_TOKENS + ["the", "cat"])
    data, _ = build_corpus(corpus, WORD, vocab=vocab, progress=False)
    assert data.vocab.itos == vocab.itos
    assert vocab.textify(data.doc(0))[:5] == ["xxbos", "xxmaj", "the", "cat", "xxunk"]


def test_interrupted_build_leaves_no_cache(corpus, tmp_path, monkeypatch):
    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(cache_mod.Vocab, "build", boom)
    with pytest.raises(KeyboardInterrupt):
        build_corpus(corpus, WORD, progress=False)
    assert list((tmp_path / "cache" / "corpora").iterdir()) == []


def _killable_build(folder):
    """A child process that holds `folder`'s build lock the way a running build does, until killed."""
    code = ("import sys, pathlib; from ulmfit.data.cache import _hold_build_lock; "
            "f = _hold_build_lock(pathlib.Path(sys.argv[1])); print('held', flush=True); sys.stdin.read()")
    child = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    return child


def test_build_killed_mid_way_is_swept_by_the_next_build_and_a_running_one_is_not(corpus, tmp_path, capsys):
    corpora = tmp_path / "cache" / "corpora"
    killed, running = corpora / ".0123456789abcdef.building.aaaa", corpora / ".fedcba9876543210.building.bbbb"
    for d in (killed, running):
        d.mkdir(parents=True)
        (d / "tokens.txt").write_text("xxbos the cat\n" * 1000)
    victim, alive = _killable_build(killed), _killable_build(running)
    try:
        victim.kill()  # SIGKILL: no handler runs, the folder stays; the kernel drops the lock
        victim.wait()
        assert killed.exists()
        data, _ = build_corpus(corpus, WORD, progress=True)
        assert not killed.exists() and running.exists()  # a live build keeps its folder
        assert f"removed {killed}, the unfinished build of a run that was killed (0.0 MB)" in capsys.readouterr().err
        # the new cache carries no lock file, and nothing of the build is left next to it
        assert not (data.path / cache_mod.BUILD_LOCK).exists()
        assert sorted(p.name for p in corpora.iterdir()) == sorted([data.path.name, running.name])
    finally:
        alive.kill()
        alive.wait()
    assert cache_mod.sweep_stale_builds(corpora) == [(running, 14000)]


def test_unlocked_build_folder_of_an_older_version_is_swept_only_when_long_untouched(tmp_path):
    old, recent = tmp_path / ".4f217d3b1cc7d9bb.building.x", tmp_path / ".030ec095cc388fe2.building.y"
    for d in (old, recent):
        d.mkdir()
        (d / "tokens.txt").write_text("abc")
    # anything else is never touched: another folder, or one named like a build of a user's --cache-dir
    # (not a default cache's hex name) that has no lock file to prove it is ours
    keep, theirs = tmp_path / "not-a-build", tmp_path / ".mine.building.z"
    keep.mkdir()
    theirs.mkdir()
    long_ago = time.time() - cache_mod.STALE_UNLOCKED_SECONDS - 60
    for p in (old / "tokens.txt", old, keep, theirs):
        os.utime(p, (long_ago, long_ago))
    assert cache_mod.sweep_stale_builds(tmp_path) == [(old, 3)]
    assert recent.exists() and keep.exists() and theirs.exists() and not old.exists()


def test_subword_build_trains_sentencepiece_with_specials_first(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ULMFIT_CACHE", str(tmp_path / "cache"))
    f = tmp_path / "c.txt"
    f.write_text("\n".join(f"The {w} saw {v} the river." for w in ("cat", "dog", "bird", "fish")
                           for v in ("near", "by", "across", "over", "under")) + "\n")
    cfg = TokenizerConfig(kind="subword", sp_vocab_size=80)
    data, sp = build_corpus(f, cfg, progress=False)
    assert sp is not None and sp.startswith(str(data.path))
    assert data.vocab.itos[:9] == SPECIAL_TOKENS and len(data.vocab) <= 80
    # this small text has fewer distinct pieces than asked for, and the build says so
    assert len(data.vocab) < 72 and f"SentencePiece found {len(data.vocab)} pieces in this text, fewer than the 80" \
        in capsys.readouterr().err
    assert data.n_docs() == 20 and int(data.ids.max()) < len(data.vocab)
    assert data.doc(0)[0] == SPECIAL_TOKENS.index("xxbos")
    # the cached model encodes new text into the same ids
    (ids,) = encode_texts(["The cat saw near the river."], cfg, data.vocab, sp)
    assert np.array_equal(ids, data.doc(0))


def test_a_subword_cache_is_read_only_with_its_own_sentencepiece_model(tmp_path, monkeypatch):
    import shutil

    monkeypatch.setenv("ULMFIT_CACHE", str(tmp_path / "cache"))
    f = tmp_path / "c.txt"
    f.write_text("\n".join(f"The {w} saw {v} the river." for w in ("cat", "dog", "bird", "fish")
                           for v in ("near", "by", "across", "over", "under")) + "\n")
    data, sp = build_corpus(f, TokenizerConfig(kind="subword", sp_vocab_size=80), progress=False)
    copy = tmp_path / "copy"
    shutil.copytree(data.path, copy)
    (copy / "spm.model").unlink()  # copied without it: a model trained on it could never read text
    with pytest.raises(UlmfitError, match="without its spm.model"):
        load_corpus_dir(copy)
    g = tmp_path / "g.txt"
    g.write_text("\n".join(f"A {w} ate {v} bread." for w in ("fox", "hen", "owl") for v in ("hot", "old")) + "\n")
    _, other = build_corpus(g, TokenizerConfig(kind="subword", sp_vocab_size=60), progress=False)
    shutil.copyfile(other, copy / "spm.model")  # another corpus's model: its pieces are other ids
    with pytest.raises(UlmfitError, match="not the SentencePiece model this cache was made with"):
        load_corpus_dir(copy)


def test_the_sentencepiece_sample_cuts_text_without_spaces_into_lines_it_keeps(tmp_path):
    from ulmfit.data.cache import SP_LINE_CHARS, _write_sp_sample

    src = tmp_path / "c.txt"
    src.write_text("東京は大きな都市です。" * 2000 + "\n")  # 22,000 characters, no space: one "word"
    _write_sp_sample(iter(src.read_text().splitlines()), tmp_path / "s.txt", src, TokenizerConfig(kind="subword"))
    lines = (tmp_path / "s.txt").read_text(encoding="utf-8").splitlines()
    assert len(lines) > 1 and max(len(l.encode()) for l in lines) < 1 << 15 and max(map(len, lines)) <= SP_LINE_CHARS
    # nothing dropped (the rules put a space after every MAX_WORD_CHARS characters without one)
    assert "".join("".join(lines).split()) == "".join(src.read_text().split())


def test_encode_texts_word_level(corpus):
    data, _ = build_corpus(corpus, WORD, progress=False)
    (ids,) = encode_texts(["The cat"], WORD, data.vocab)
    assert ids.dtype == np.int64 and data.vocab.textify(ids) == ["xxbos", "xxmaj", "the", "cat"]


def _toy(lengths):
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return TokenIds(np.arange(offsets[-1], dtype=np.uint16), offsets, Vocab(SPECIAL_TOKENS))


def test_split_holds_out_whole_documents_deterministically():
    data = _toy([10] * 40)
    train, valid = data.split(0.1, seed=3)
    assert train.n_docs() + valid.n_docs() == 40 and valid.n_docs() == 4
    docs = lambda d: {tuple(d.doc(i)) for i in range(d.n_docs())}  # noqa: E731
    assert docs(train).isdisjoint(docs(valid)) and len(docs(train) | docs(valid)) == 40
    again = data.split(0.1, seed=3)[1]
    assert docs(again) == docs(valid) and docs(data.split(0.1, seed=4)[1]) != docs(valid)
    assert data.split(0.5, max_valid_tokens=20)[1].n_tokens() == 20
    tiny_train, tiny_valid = _toy([5, 5]).split(0.01)
    assert tiny_train.n_docs() == tiny_valid.n_docs() == 1


def test_split_of_a_single_document_cuts_its_end():
    train, valid = _toy([100]).split(0.1)
    assert list(train.doc(0)) == list(range(90)) and list(valid.doc(0)) == list(range(90, 100))


def test_tables_for_language_models_are_read_like_the_labeled_ones(tmp_path):
    """finetune-lm reads CSV/TSV text columns with the same rules as train-classifier."""
    t = tmp_path / "d.tsv"
    t.write_text('text\tlabel\n"Best film ever\t1\n"Best" film\t0\n')
    assert list(iter_documents(t)) == ['"Best film ever', '"Best" film']
    c = tmp_path / "d.csv"
    c.write_text("text,label\ngood,1\nThe film, sadly, was awful.,0\n")
    with pytest.raises(UlmfitError, match=r"d.csv, line 3: 4 field\(s\) where the header has 2"):
        list(iter_documents(c))
    c.write_text('text,label\ngood,1\n"never closed,0\n' + "x,1\n" * 20)
    with pytest.raises(UlmfitError, match="malformed ','-separated row"):
        list(iter_documents(c))
    c.write_text("text,text\na,b\n")
    with pytest.raises(UlmfitError, match="names column 'text' more than once"):
        list(iter_documents(c))


def test_a_json_file_is_read_as_json_lines_and_an_array_is_refused(tmp_path):
    f = tmp_path / "d.json"
    f.write_text('{"text": "first doc", "label": 1}\n{"text": "second doc", "label": 0}\n')
    assert list(iter_documents(f)) == ["first doc", "second doc"]
    f.write_text('[\n  {"text": "first doc"}\n]\n')
    with pytest.raises(UlmfitError, match="looks like a JSON array"):
        list(iter_documents(f))


def test_a_folder_corpus_skips_hidden_files_and_folders(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "1.txt").write_text("one")
    (tmp_path / "a" / "._1.txt").write_bytes(b"\x00\x05\x16\x07\xff junk")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "x.txt").write_text("hidden")
    assert list(iter_documents(tmp_path)) == ["one"]


def test_doc_events_join_pieces_and_skip_documents_without_tokens():
    B = "xxbos"
    pieces = [([B, "a"], True), ([B, "b"], False), ([B], False),  # a document in three pieces
              ([B], True), ([B], False),  # no tokens at all: skipped
              ([B], True), ([B, "c"], False),  # its first piece has none, a later one has
              ([B, "d"], True)]
    assert list(cache_mod._doc_events(pieces)) == [
        ("add", [B, "a"]), ("more", ["b"]), ("skip", None), ("add", [B]), ("more", ["c"]), ("add", [B, "d"])]
    assert list(cache_mod._doc_events([([B], True)])) == [("skip", None)]


@pytest.mark.parametrize("kind", ["word", "subword"])
def test_a_corpus_of_long_documents_built_in_pieces_has_the_tokens_of_the_whole(tmp_path, monkeypatch, kind):
    """Long documents are tokenised and written piece by piece (never all their tokens in memory);
    the token cache is the one the whole documents give, id for id, with and without a vocabulary."""
    from ulmfit.text import tokenize as t

    lines = [" ".join(f"Doc {d}: The CAT number {i} sat on the MAT, said nooooo no no no no." for i in range(40))
             for d in range(5)] + ["short one", "another short one"]
    (tmp_path / "c.txt").write_text("\n".join(lines) + "\n")
    cfg = TokenizerConfig(kind=kind, sp_vocab_size=80)
    whole, _ = build_corpus(tmp_path / "c.txt", cfg, cache_dir=tmp_path / "whole", n_workers=1, progress=False)
    sp = str(tmp_path / "whole" / "spm.model") if kind == "subword" else None
    monkeypatch.setattr(t, "PIECE_CHARS", 64)
    monkeypatch.setattr(t, "CHUNK_CHARS", 300)
    for n_workers, vocab in ((1, None), (2, whole.vocab)):
        if kind == "subword" and vocab is None:
            vocab = whole.vocab  # one SentencePiece model for both (training one anew may differ)
        got, _ = build_corpus(tmp_path / "c.txt", cfg, cache_dir=tmp_path / f"p{n_workers}", n_workers=n_workers,
                              progress=False, vocab=vocab, sp_model=sp)
        assert got.vocab.itos == whole.vocab.itos and got.n_docs() == whole.n_docs() == 7
        assert np.array_equal(got.offsets, whole.offsets) and np.array_equal(got.ids, whole.ids)


def test_the_cache_root_expands_a_home_and_ignores_an_empty_setting(monkeypatch, tmp_path):
    from pathlib import Path

    from ulmfit.io import cache_root

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("ULMFIT_CACHE", "~/mycache")  # quoted in a shell: it used to make ./~/mycache
    assert cache_root() == tmp_path / "mycache"
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("ULMFIT_CACHE", "")  # it used to put the cache in the current folder
    assert cache_root() == Path.home() / ".cache" / "ulmfit"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # read as PyTorch and Hugging Face read it
    assert cache_root() == tmp_path / "xdg" / "ulmfit"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/dir")  # not absolute: ignored, as the XDG rules say
    assert cache_root() == Path.home() / ".cache" / "ulmfit"
    monkeypatch.setenv("ULMFIT_CACHE", str(tmp_path / "mine"))  # the variable of its own comes first
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "mine"


def test_a_token_cache_that_cannot_be_written_says_so_and_how_to_fix_it(monkeypatch, tmp_path):
    import os

    from ulmfit.io import UlmfitError, writable_cache_dir

    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **k: False if mode == os.W_OK else real(p, mode, **k))
    with pytest.raises(UlmfitError, match=r"cannot write the cache folder .*set ULMFIT_CACHE to a folder you can write"):
        writable_cache_dir(tmp_path / "corpora")
    monkeypatch.undo()
    assert writable_cache_dir(tmp_path / "corpora").is_dir()
    (tmp_path / "afile").write_text("")
    monkeypatch.setenv("ULMFIT_CACHE", str(tmp_path / "afile"))  # it was "[Errno 20] Not a directory", unnamed
    for where in (tmp_path / "afile", tmp_path / "afile" / "corpora"):
        with pytest.raises(UlmfitError, match=r"a file stands where a folder .* set ULMFIT_CACHE to a folder \(it is "):
            writable_cache_dir(where)


def test_a_run_whose_cache_cannot_be_written_tokenises_into_a_folder_of_its_own(corpus, monkeypatch, capsys):
    """A service account with a read-only home: lm-eval, finetune-lm and pretrain still run, their
    tokens in a temporary folder that the process removes at exit, and say so."""
    import ulmfit.data.cache as cache
    from ulmfit.io import UlmfitError, cache_root

    real = cache.writable_cache_dir

    def read_only(path):
        if str(path).startswith(str(cache_root())):
            raise UlmfitError(f"cannot write the cache folder {path} (Permission denied); set ULMFIT_CACHE")
        return real(path)

    monkeypatch.setattr(cache, "writable_cache_dir", read_only)
    data, _ = cache.build_corpus(corpus, WORD, progress=False)
    assert data.n_tokens() > 0
    assert "This run keeps its tokens in" in capsys.readouterr().err
    assert not (cache_root() / "corpora").exists() or not any((cache_root() / "corpora").iterdir())
    assert cache.run_scratch_dir().is_dir() and any((cache.run_scratch_dir() / "corpora").iterdir())
    # the processes of a torchrun job share one cache (process 0 builds it): no folders of their own,
    # each tokenising it all, but the error that says what to do
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UlmfitError, match="set ULMFIT_CACHE"):
        cache.build_corpus(corpus, WORD, progress=False)


def test_a_semicolon_csv_corpus_is_read_by_its_header(tmp_path, capsys):
    f = tmp_path / "c.csv"
    f.write_text('id;text\n1;"One; two."\n2;Three, four.\n', encoding="utf-8")
    assert list(iter_documents(f)) == ["One; two.", "Three, four."]
    assert "separated by semicolons" in capsys.readouterr().err
    g = tmp_path / "comma.csv"
    g.write_text("id,text\n1,One; two.\n", encoding="utf-8")
    assert list(iter_documents(g)) == ["One; two."]
