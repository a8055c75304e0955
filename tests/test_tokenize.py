"""Tokenisation rules (the paper's xxmaj/xxup/xxrep/xxwrep and HTML clean-up) and the parallel map."""

import pytest

from ulmfit.text.tokenize import (
    SPECIAL_TOKENS,
    SubwordTokenizer,
    TokenizerConfig,
    WordTokenizer,
    detokenize,
    tokenize_parallel,
)


@pytest.fixture(scope="module")
def tok():
    return WordTokenizer(TokenizerConfig())


def test_capitalised_word_becomes_xxmaj_and_lower_case(tok):
    assert tok.tokenize("The cat") == ["xxbos", "xxmaj", "the", "cat"]


def test_all_caps_word_becomes_xxup(tok):
    assert tok.tokenize("HELLO world") == ["xxbos", "xxup", "hello", "world"]


def test_repeated_character_becomes_xxrep(tok):
    assert tok.tokenize("coooool") == ["xxbos", "c", "xxrep", "5", "o", "l"]


def test_repeated_word_becomes_xxwrep(tok):
    assert tok.tokenize("no no no no") == ["xxbos", "xxwrep", "4", "no"]


def test_html_is_cleaned_up(tok):
    assert tok.tokenize("a<br />b &amp; c <b>bold</b>") == ["xxbos", "a", "b", "&", "c", "bold"]
    # an escape that lost its '&' upstream is repaired only when it stands alone
    assert tok.tokenize("it amp; that") == ["xxbos", "it", "&", "that"]
    assert "camp" in tok.tokenize("camp;")


def test_angle_brackets_that_are_no_html_tag_keep_their_words(tok):
    """Only a known element name with name=value attributes is a tag: text between a '<' and a
    later '>' stays text (it was deleted, up to whole sentences)."""
    assert tok.tokenize("We know that a<b and b>c holds.")[-7:] == ["<", "b", "and", "b", ">", "c", "holds", "."][-7:]
    assert "meh" in tok.tokenize("I rated it <meh> at best")
    words = tok.tokenize("If x <y for every input, the loss is small. Later we show p &gt; 0.05.")
    assert {"every", "input", "loss", "small", "later", "show"} <= set(words)
    assert tok.tokenize('<P>Hi <a href="x y" target=_blank>there</a><img src=a.png/></p>') == \
        ["xxbos", "xxmaj", "hi", "there"]
    # the forms scraped pages are full of: "</br>", attributes with no value, URLs with queries
    assert tok.tokenize('Great</br>film <td nowrap>cast</td> <a href=http://x.com/?id=1&y=2>link</a> '
                        '<input type=checkbox checked><br clear="all">end') == \
        ["xxbos", "xxmaj", "great", "film", "cast", "link", "end"]


def test_wikitext_unknown_word_marker_becomes_xxunk(tok):
    assert tok.tokenize("The game 's <unk> was <unk> .") == \
        ["xxbos", "xxmaj", "the", "game", "'s", "xxunk", "was", "xxunk", "."]
    assert tok.tokenize("cost #36; 5") == ["xxbos", "cost", "$", "5"]


def test_invisible_characters_surrogates_and_decomposed_accents(tok):
    """A BOM inside the text (files joined by cat) or a zero-width space does not make a new word;
    a lone surrogate (a JSON escape of half an emoji) is U+FFFD, not a crash in spaCy; an accent
    typed as a combining mark gives the same token as the composed letter."""
    assert tok.tokenize("one\n\ufeffThe z\u200bero") == ["xxbos", "one", "xxmaj", "the", "zero"]
    assert tok.tokenize("bad \ud83d half") == ["xxbos", "bad", "\ufffd", "half"]
    assert tok.tokenize("a pair \ud83d\ude00 is one") == ["xxbos", "a", "pair", "\U0001F600", "is", "one"]
    assert tok.tokenize("cafe\u0301") == tok.tokenize("caf\u00e9") == ["xxbos", "caf\u00e9"]


def test_a_long_run_without_spaces_is_cut_so_spacy_stays_linear(tok):
    """spaCy's affix passes are quadratic in a word's length (16,000 characters of "});" took 25 s);
    a run is cut every MAX_WORD_CHARS characters."""
    import time

    from ulmfit.text.tokenize import MAX_WORD_CHARS, pre_rules

    run = "});" * 20_000
    assert max(len(w) for w in pre_rules(run).split()) == MAX_WORD_CHARS
    word = "ab" * (MAX_WORD_CHARS // 2)
    assert pre_rules(word) == word and pre_rules(word + "yz") == word + " yz"
    t0 = time.perf_counter()
    toks = tok.tokenize(run + " " + "\U0001F602\U0001F923" * 10_000)
    assert time.perf_counter() - t0 < 30 and len(toks) == 1 + 60_000 + 20_000


@pytest.mark.parametrize("text", ["", "   \n\t ", "<br />"])
def test_empty_text_gives_only_xxbos(tok, text):
    assert tok.tokenize(text) == ["xxbos"]


def test_detokenize_drops_markers_that_mark_nothing_and_expands_repeats():
    # a language model's samples can put one marker after another; none may leak into the text
    assert detokenize(["xxmaj", "xxmaj", "film", "xxup", "xxmaj", "ok", "xxrep", "xxmaj", "a"]) == "Film Ok A"
    assert detokenize(["xxbos", "it", "was", "xxrep", "4", "o", "xxwrep", "3", "no", ".", "xxunk", "xxup"]) == \
        "it was oooo no no no. xxunk"


def test_subword_pieces_that_start_no_word_are_glued_to_the_word_before():
    from ulmfit.text.tokenize import join_continuation

    # a short sample, or text without spaces, may hold no piece with the word mark: they are still pieces
    assert detokenize(["e", "s"], subword=True) == "es" and detokenize(["大", "きな"], subword=True) == "大きな"
    assert detokenize(["e", "s"]) == "e s"  # word tokens
    assert join_continuation("The cat lik", detokenize(["e", "\u2581dogs"], subword=True), glue=True) == \
        "The cat like dogs"
    assert join_continuation("東京は", "大きな", glue=True) == "東京は大きな"
    assert join_continuation("The cat", "likes it") == "The cat likes it"


def test_detokenize_leaves_a_repeat_marker_with_no_ascii_count():
    assert detokenize(["xxbos", "xxrep", "\u00b2", "o"]) == "\u00b2 o"


def test_detokenize_puts_quotes_and_brackets_against_what_they_enclose():
    tok = WordTokenizer(TokenizerConfig())
    for text in ["They said 'hello' to me.", 'He said "yes" and left (really).', '"Quoted" at the start',
                 "the students' books and the teachers' pens", "rock n' roll", "a [b] {c}, it's John's."]:
        assert detokenize(tok.tokenize(text)) == text
    assert detokenize(["a", '"', "b"]) == 'a "b'  # an unclosed quote still opens


def test_detokenize_restores_case():
    assert detokenize(["xxbos", "xxmaj", "the", "xxup", "cat", "sat", "."]) == "The CAT sat."


def _texts(n):
    return (f"Doc {i}: The CAT said nooooo {i} times." for i in range(n))


def test_parallel_workers_give_the_same_tokens_in_order():
    cfg = TokenizerConfig()
    serial = list(tokenize_parallel(_texts(23), cfg, n_workers=1, progress=False))
    parallel = list(tokenize_parallel(_texts(23), cfg, n_workers=2, chunk_docs=4, progress=False))
    assert parallel == serial
    assert [t[3] for t in serial] == [str(i) for i in range(23)]


SCRIPT_WITHOUT_GUARD = """
import sys
from ulmfit.text.tokenize import TokenizerConfig, tokenize_parallel
print("body", file=sys.stderr)
docs = [f"Document {i} is Great." for i in range(40)]
out = list(tokenize_parallel(docs, TokenizerConfig(), n_workers=2, chunk_docs=8, progress=False))
print(len(out), out[7][3])
"""


@pytest.mark.parametrize("how", ["script", "module"])
def test_workers_do_not_rerun_a_script_without_the_main_guard(tmp_path, how):
    """Spawned workers used to re-run such a script (python file.py or python -m), which started
    workers of its own, failed, and left the pool waiting forever."""
    import subprocess
    import sys

    (tmp_path / "unguarded.py").write_text(SCRIPT_WITHOUT_GUARD)
    argv = [sys.executable, "unguarded.py"] if how == "script" else [sys.executable, "-m", "unguarded"]
    r = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["40", "7"] and r.stderr.count("body") == 1


def test_parallel_reads_its_input_lazily():
    consumed = []

    def texts():
        for i in range(100):
            consumed.append(i)
            yield f"text {i}"

    results = tokenize_parallel(texts(), TokenizerConfig(), n_workers=1, chunk_docs=5, progress=False)
    assert next(results) == ["xxbos", "text", "0"]
    assert len(consumed) <= 10


@pytest.fixture(scope="module")
def sp_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("sp")
    lines = [f"The cat number {i} sat on the MAT and looked at the dog." for i in range(200)]
    (d / "train.txt").write_text("\n".join(SubwordTokenizer.training_text(t) for t in lines) + "\n")
    return SubwordTokenizer.train(str(d / "train.txt"), str(d / "sp"), vocab_size=60)


def test_a_subword_vocabulary_smaller_than_the_texts_characters_says_which_option_to_raise(tmp_path):
    from ulmfit.io import UlmfitError

    chars = [chr(0x4E00 + i) for i in range(300)]  # 300 CJK characters, each as frequent
    (tmp_path / "zh.txt").write_text("\n".join("".join(chars[(i + j) % 300] for j in range(40)) for i in range(300)))
    with pytest.raises(UlmfitError, match=r"characters alone need 3\d\d pieces .*--sp-vocab 100 is too small"):
        SubwordTokenizer.train(str(tmp_path / "zh.txt"), str(tmp_path / "sp"), vocab_size=100)


def test_subword_model_puts_the_specials_first(sp_model):
    assert SubwordTokenizer(sp_model).vocab()[: len(SPECIAL_TOKENS)] == SPECIAL_TOKENS


def test_subword_markers_are_single_tokens(sp_model):
    sub = SubwordTokenizer(sp_model)
    pieces = sub.tokenize("The cat sat on the MAT")
    assert pieces[:2] == ["xxbos", "xxmaj"] and "xxup" in pieces
    # no lone word-boundary piece is spent in front of a marker
    assert all(nxt not in ("xxmaj", "xxup") for p, nxt in zip(pieces, pieces[1:]) if p == "\u2581")
    assert sub.encode_many(["", "The"])[0] == [SPECIAL_TOKENS.index("xxbos")]
    assert detokenize(pieces) == "The cat sat on the MAT"


THREADED = """
import sys, threading
from ulmfit.text.tokenize import TokenizerConfig, tokenize_parallel
spec = sys.modules["__main__"].__spec__
out = {}
def run(k):
    docs = [f"Document {i} of {k}." for i in range(40)]
    out[k] = list(tokenize_parallel(docs, TokenizerConfig(), n_workers=2, chunk_docs=8, progress=False))
threads = [threading.Thread(target=run, args=(k,)) for k in range(3)]
[t.start() for t in threads]
[t.join() for t in threads]
print(sorted(len(v) for v in out.values()), sys.modules["__main__"].__spec__ is spec and spec is not None)
"""


def test_pools_started_from_several_threads_restore_the_main_module(tmp_path):
    import subprocess
    import sys

    (tmp_path / "threaded.py").write_text(THREADED)
    r = subprocess.run([sys.executable, "-m", "threaded"], cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["[40,", "40,", "40]", "True"]


@pytest.mark.parametrize("kind", ["word", "subword"])
def test_a_long_text_is_tokenised_in_pieces_with_the_tokens_of_the_whole(kind, sp_model, monkeypatch):
    """A text over PIECE_CHARS goes through the tokeniser in pieces cut at whitespace (spaCy's memory
    grows with a text's length); its tokens are those of the whole text, in every path: in process,
    in workers, and for texts in memory (predict)."""
    import numpy as np

    from ulmfit.data.cache import encode_texts
    from ulmfit.text import tokenize as t
    from ulmfit.text.tokenize import make_tokenizer
    from ulmfit.text.vocab import Vocab

    cfg = TokenizerConfig(kind=kind)
    sp = sp_model if kind == "subword" else None
    long = " ".join(f"The CAT number {i} sat on the MAT, said nooooo and looked\nat the dog." for i in range(60))
    tricky = ["hello " * 300,  # one repeated word: no cut inside the run (it becomes one xxwrep)
              " ".join(f'word {i} <img src="a.jpg" width="10" height="20"> more' for i in range(40)),  # tags
              " ".join(f"x{i} no nbsp;no no no, \\n then @-@ on" for i in range(40)),  # escapes, wiki markup
              "a" * 500 + " tail",  # no space to cut at
              "\r\n\t ".join(f"Line {i} ends." for i in range(80)),
              "wow!!!!ha " + "ha " * 40 + "end",  # the run of "ha" starts inside "wow!!!!ha"
              " ".join(f"go ) :)x ({i}" for i in range(40)),  # spaCy splits ":)x" by the word before it
              " ".join(f"a &lt;a href='x {i}'&gt;b" for i in range(40))]  # an escaped tag spans a space
    texts = ["short one", long, "", "The end", long[:500], *tricky]
    whole = [make_tokenizer(cfg, sp).tokenize_many([x])[0] if kind == "word" else
             make_tokenizer(cfg, sp).encode_many([x])[0] for x in texts]
    monkeypatch.setattr(t, "PIECE_CHARS", 64)
    monkeypatch.setattr(t, "CHUNK_CHARS", 300)  # a text's pieces also span several tasks
    assert len(list(t._pieces([long]))) > 50
    for n_workers in (1, 2):
        got = list(tokenize_parallel(texts, cfg, sp, n_workers=n_workers, chunk_docs=3, progress=False))
        assert got == whole, n_workers
    vocab = Vocab.build(__import__("collections").Counter(tok for r in whole for tok in r), 1000, 1) \
        if kind == "word" else None
    if kind == "word":
        ids = encode_texts(texts, cfg, vocab)
        assert [list(a) for a in ids] == [vocab.numericalize(r) for r in whole]
    else:
        ids = encode_texts(texts, cfg, None, sp)
        assert len(ids) == len(whole) and all(np.array_equal(a, r) for a, r in zip(ids, whole, strict=True))


def test_tokenizer_settings_are_checked_when_made_not_after_tokenising():
    from ulmfit.io import UlmfitError

    for bad in ({"max_vocab": 5}, {"min_freq": 0}, {"sp_vocab_size": 3}):
        with pytest.raises(UlmfitError, match=f"TokenizerConfig.{next(iter(bad))} must be"):
            TokenizerConfig(**bad)


def test_a_long_text_of_words_that_start_with_punctuation_is_still_cut_into_pieces(tok, monkeypatch):
    """Pieces start before a letter or digit where they can; a text with no such word is cut as
    before that rule, not tokenised whole."""
    from ulmfit.text import tokenize as t

    text = " ".join(f'"w{i}" ({i}' for i in range(400))
    monkeypatch.setattr(t, "PIECE_CHARS", 500)
    assert len(list(t._pieces([text]))) > 5
    assert t.tokenize_in_process(tok, [text])[0] == tok.tokenize(text)


def test_a_vocabulary_cap_with_no_room_for_words_is_refused():
    from collections import Counter

    from ulmfit.io import UlmfitError
    from ulmfit.text.vocab import Vocab

    with pytest.raises(UlmfitError, match="no room for words"):
        Vocab.build(Counter({"cat": 5}), max_vocab=len(SPECIAL_TOKENS))
    assert Vocab.build(Counter({"cat": 5}), max_vocab=len(SPECIAL_TOKENS) + 1).itos[-1] == "cat"


def test_the_default_tokeniser_pool_fits_windows_handle_limit(monkeypatch):
    import os
    import sys

    from ulmfit.text import tokenize

    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 128)
    monkeypatch.setattr(sys, "platform", "darwin")
    assert tokenize.default_workers() == 128
    monkeypatch.setattr(sys, "platform", "win32")  # a pool of more than 61 processes fails there
    assert tokenize.default_workers() == 61


def test_making_a_word_tokenizer_leaves_pythons_random_state_and_names_an_unknown_language():
    import random
    import subprocess
    import sys

    from ulmfit.io import UlmfitError
    from ulmfit.text.tokenize import TokenizerConfig, WordTokenizer

    # the first spaCy import draws from the global generator: a fresh interpreter shows it
    code = ("import random; random.seed(1); from ulmfit.text.tokenize import WordTokenizer; WordTokenizer(); "
            "print(random.random() == (random.seed(1) or random.random()))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == "True", r.stderr[-1500:]
    state = random.getstate()
    with pytest.raises(UlmfitError, match=r"tokenizer language '\.\./\.\./etc': spaCy has no such language"):
        WordTokenizer(TokenizerConfig(lang="../../etc"))  # a config.json from elsewhere: ImportError before
    assert random.getstate() == state


def test_a_broken_spacy_install_is_not_reported_as_a_missing_language(monkeypatch):
    import spacy

    from ulmfit.io import UlmfitError
    from ulmfit.text.tokenize import WordTokenizer

    def broken(lang):  # spaCy 3.5.0 beside setuptools 82+, which no longer ships pkg_resources
        raise ImportError("No module named 'pkg_resources'", name="pkg_resources")

    monkeypatch.setattr(spacy, "blank", broken)
    with pytest.raises(UlmfitError, match=r"spaCy could not be imported \(No module named 'pkg_resources'\)"):
        WordTokenizer()
    monkeypatch.undo()
    with pytest.raises(UlmfitError, match="spaCy has no such language"):
        WordTokenizer(TokenizerConfig(lang="zz-not-a-language"))
