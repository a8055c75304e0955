"""Labeled-data readers (CSV/TSV, fast.ai layout, JSONL, class folders, aclImdb, TREC), their error
messages, and the stratified train/validation split."""

import json
from collections import Counter

import pytest

from ulmfit.data.labeled import (
    LabeledTexts,
    check_labels,
    read_labeled,
    read_unlabeled_texts,
    stratified_split,
    validate_training,
)
from ulmfit.io import UlmfitError


def write(path, text, encoding="utf-8"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


# ---------------------------------------------------------------------------------------------
# Formats


def test_csv_with_header_joins_two_text_columns_with_xxfld(tmp_path):
    f = write(tmp_path / "d.csv", 'label,title,body\npos,Great,"Loved it, really"\nneg,Bad,Hated it\n')
    d = read_labeled(f, text_col="title,body")
    assert d.texts == ["Great xxfld Loved it, really", "Bad xxfld Hated it"]
    assert d.labels == ["pos", "neg"]
    assert d.lines == [2, 3]
    assert d.label_names() == ["neg", "pos"]
    assert len(d) == 2 and not d.multi_label


def test_a_spreadsheets_semicolon_csv_is_read_by_its_header_and_said(tmp_path, capsys):
    # Excel in German, French, Spanish... locales writes ';' between fields
    f = write(tmp_path / "d.csv", 'label;text\npos;"Loved it; really"\nneg;Hated it, truly\n')
    d = read_labeled(f)
    assert d.texts == ["Loved it; really", "Hated it, truly"] and d.labels == ["pos", "neg"]
    assert "separated by semicolons" in capsys.readouterr().err
    g = write(tmp_path / "named.csv", "Review;Sentiment\ngreat;pos\nbad;neg\n")
    assert read_labeled(g, text_col="Review", label_col="Sentiment").labels == ["pos", "neg"]
    assert list(read_unlabeled_texts(write(tmp_path / "texts.csv", 'id;text\n1;"good; fine"\n2;bad\n'))) == [
        "good; fine", "bad"]


def test_a_csv_from_a_pipe_is_read_whole_with_no_delimiter_guess(tmp_path, capsys):
    import os
    import signal
    import threading

    def hung(*_):  # reading the pipe's start twice used to block on a second open of the FIFO
        raise AssertionError("reading the pipe hung")

    signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)

    for i, (text, ok) in enumerate((("text,label\ngood; fine,pos\nbad,neg\n", True),
                                    ("text;label\ngood;pos\nbad;neg\n", False))):
        fifo = tmp_path / f"fifo{i}"
        os.mkfifo(fifo)
        writer = threading.Thread(target=lambda: fifo.write_text(text))
        writer.start()
        try:
            if ok:  # the guess used to read the pipe's start, and the reader found it empty
                assert read_labeled(fifo, fmt="csv").texts == ["good; fine", "bad"]
            else:  # a pipe gives its start once: no guess, so the usual error
                with pytest.raises(UlmfitError, match="no column 'text'"):
                    read_labeled(fifo, fmt="csv")
        finally:
            writer.join(timeout=30)
    signal.alarm(0)
    assert "semicolons" not in capsys.readouterr().err


def test_a_comma_csv_whose_texts_hold_semicolons_stays_comma_separated(tmp_path, capsys):
    f = write(tmp_path / "d.csv", "text,label\nfine; really fine,pos\nawful; just awful,neg\n")
    assert read_labeled(f).texts == ["fine; really fine", "awful; just awful"]
    # a header that holds a ';' inside a column's name, but names the columns split at commas
    h = write(tmp_path / "named.csv", 'text,"notes; misc",label\nfine,x,pos\nawful,y,neg\n')
    assert read_labeled(h).texts == ["fine", "awful"]
    # without a header row nothing tells the columns: a ';' is text, even in a first row that reads as names
    g = write(tmp_path / "nohead.csv", "text;label\ngood;pos\n")
    assert list(read_unlabeled_texts(g, header=False, text_col="0")) == ["text;label", "good;pos"]
    with pytest.raises(UlmfitError, match="the rows have a single column"):  # not split at ';' into two
        read_labeled(g, header=False)
    assert "semicolons" not in capsys.readouterr().err


def test_csv_default_columns_text_and_label_and_tsv(tmp_path):
    f = write(tmp_path / "d.csv", "text,label\nfine film,pos\nawful,neg\n")
    assert read_labeled(f).texts == ["fine film", "awful"]
    t = write(tmp_path / "d.tsv", "label\ttext\npos\tgood, really\nneg\tbad\n")
    d = read_labeled(t)
    assert d.texts == ["good, really", "bad"] and d.labels == ["pos", "neg"]


def test_csv_without_header_by_column_index(tmp_path):
    f = write(tmp_path / "d.csv", "b,x,first text\na,y,second text\nb,z,third text\n")
    d = read_labeled(f, text_col="1,2", label_col="0", header=False)
    assert d.texts == ["x xxfld first text", "y xxfld second text", "z xxfld third text"]
    assert d.labels == ["b", "a", "b"]
    # the same file with the header detected: the first label "b" recurs, so row 1 is data
    assert read_labeled(f, text_col="2", label_col="0").texts == ["first text", "second text", "third text"]


def test_fastai_ag_news_layout(tmp_path):
    rows = '"3","Wall St. Bears","Reuters - Short-sellers..."\n"4","New chip","A faster chip"\n"3","Oil","Prices up"\n'
    f = write(tmp_path / "train.csv", rows)
    for fmt in ("fastai", "auto"):  # auto: a numeric first label means the first row is data
        d = read_labeled(f, fmt=fmt)
        assert d.labels == ["3", "4", "3"]
        assert d.texts[0] == "Wall St. Bears xxfld Reuters - Short-sellers..."
        assert d.lines == [1, 2, 3]
    # label,body (the Yelp layout): a single text column, no xxfld
    y = write(tmp_path / "yelp.csv", '"1","bad food"\n"2","great food"\n')
    assert read_labeled(y, fmt="fastai").texts == ["bad food", "great food"]


def test_multi_line_quoted_field_keeps_the_start_line(tmp_path):
    f = write(tmp_path / "d.csv", 'text,label\n"line one\nline two",a\n"",b\n')
    with pytest.raises(UlmfitError, match=r"line 4: empty text"):
        read_labeled(f)


def test_jsonl_with_numbers_and_multi_label_lists(tmp_path):
    f = write(tmp_path / "d.jsonl", "\n".join(json.dumps(o) for o in [
        {"text": "a", "label": 1}, {"text": "b", "label": 0.0}, {"text": "c", "label": 1}]) + "\n")
    d = read_labeled(f)
    assert d.labels == ["1", "0", "1"] and d.label_names() == ["0", "1"]

    m = write(tmp_path / "m.jsonl", "\n".join(json.dumps(o) for o in [
        {"body": "x", "tags": ["sport", "news"]}, {"body": "y", "tags": "news"}, {"body": "z", "tags": []}]))
    d = read_labeled(m, text_col="body", label_col="tags")
    assert d.multi_label
    assert d.labels == [["sport", "news"], ["news"], []]
    assert d.label_names() == ["news", "sport"]


def test_multi_label_separator_splits_the_label_field(tmp_path):
    f = write(tmp_path / "d.csv", 'text,label\nx,"a|b"\ny,b\nz,a| c \n')
    d = read_labeled(f, multi_label_sep="|")
    assert d.labels == [["a", "b"], ["b"], ["a", "c"]]


def test_folder_per_class(tmp_path):
    write(tmp_path / "ham" / "1.txt", "hello friend")
    write(tmp_path / "ham" / "2.txt", "lunch?")
    write(tmp_path / "spam" / "1.txt", "\ufeffwin money")
    write(tmp_path / "spam" / "readme.md", "not a document")
    d = read_labeled(tmp_path)
    assert d.texts == ["hello friend", "lunch?", "win money"]
    assert d.labels == ["ham", "ham", "spam"]
    assert d.files[2].endswith("spam/1.txt") and d.lines == [1, 2, 3]


def _imdb(root):
    write(root / "train" / "pos" / "0_9.txt", "A fine film.")
    write(root / "train" / "pos" / "1_8.txt", "Loved it.")
    write(root / "train" / "neg" / "0_2.txt", "Dull.")
    write(root / "train" / "unsup" / "0_0.txt", "Some unlabeled review.")
    write(root / "train" / "urls_pos.txt", "http://example.invalid\n")
    write(root / "test" / "pos" / "0_10.txt", "Superb.")
    write(root / "test" / "neg" / "0_1.txt", "Awful.")
    return root


def test_aclimdb_layout_with_split_and_unsup(tmp_path):
    root = _imdb(tmp_path / "aclImdb")
    train = read_labeled(root, split="train")
    assert train.label_names() == ["neg", "pos"]  # unsup/ is not a class
    assert Counter(train.labels) == {"pos": 2, "neg": 1}
    test = read_labeled(root, split="test")
    assert sorted(test.texts) == ["Awful.", "Superb."]
    with pytest.raises(UlmfitError, match=r"train/, test/.*--split"):
        read_labeled(root)
    with pytest.raises(UlmfitError, match=r"no valid/ folder"):
        read_labeled(root, split="valid")
    # unsup/ is text for the LM; urls_pos.txt is not a document
    assert sorted(read_unlabeled_texts(root, split="train")) == [
        "A fine film.", "Dull.", "Loved it.", "Some unlabeled review."]
    everything = list(read_unlabeled_texts(root))
    assert len(everything) == 6 and "Superb." in everything


def test_unlabeled_texts_of_a_file_need_no_label_column(tmp_path):
    f = write(tmp_path / "u.csv", "text\nfirst\n\nsecond\n")
    assert list(read_unlabeled_texts(f)) == ["first", "second"]
    g = write(tmp_path / "l.csv", "text,label\nA,x\n,y\nB,z\n")
    assert list(read_unlabeled_texts(g)) == ["A", "B"]


TREC = "DESC:manner How did serfdom develop ?\nENTY:cremat What films featured Batman ?\nDESC:def What is a poll ?\n"


def test_trec_coarse_and_fine(tmp_path):
    f = write(tmp_path / "train_5500.label", TREC)
    d = read_labeled(f)  # auto-detected from the content
    assert d.labels == ["DESC", "ENTY", "DESC"]
    assert d.texts[0] == "How did serfdom develop ?"
    fine = read_labeled(f, fmt="trec", trec_fine=True)
    assert fine.labels == ["DESC:manner", "ENTY:cremat", "DESC:def"]


# ---------------------------------------------------------------------------------------------
# Bad input


def test_missing_column_lists_the_columns(tmp_path):
    f = write(tmp_path / "d.csv", "review,sentiment\ngood,pos\nbad,neg\n")
    with pytest.raises(UlmfitError, match=r"d\.csv: no column 'text'; the columns are 'review', 'sentiment'"):
        read_labeled(f)
    with pytest.raises(UlmfitError, match=r"no column 'label'.*'review', 'sentiment'"):
        read_labeled(f, text_col="review")
    assert read_labeled(f, text_col="review", label_col="sentiment").labels == ["pos", "neg"]
    j = write(tmp_path / "d.jsonl", '{"review": "x", "label": "a"}\n')
    with pytest.raises(UlmfitError, match=r"line 1: no field 'text'; the fields are 'review', 'label'"):
        read_labeled(j)


def test_empty_text_names_the_line_unless_skipped(tmp_path, capsys):
    f = write(tmp_path / "d.csv", "text,label\ngood,pos\n   ,neg\nbad,neg\n")
    with pytest.raises(UlmfitError, match=r"d\.csv, line 3: empty text.*--skip-empty"):
        read_labeled(f)
    d = read_labeled(f, skip_empty=True)
    assert d.texts == ["good", "bad"] and d.lines == [2, 4] and d.n_skipped == 1
    assert "skipped 1" in capsys.readouterr().err
    write(tmp_path / "c" / "a" / "1.txt", "ok")
    write(tmp_path / "c" / "b" / "2.txt", " \n")
    with pytest.raises(UlmfitError, match=r"2\.txt: empty text"):
        read_labeled(tmp_path / "c")


def test_empty_label_names_the_line(tmp_path):
    f = write(tmp_path / "d.csv", "text,label\ngood,pos\nbad,\n")
    with pytest.raises(UlmfitError, match=r"line 3: empty label"):
        read_labeled(f)


def test_undecodable_bytes_name_line_offset_and_suggest_encoding(tmp_path):
    f = write(tmp_path / "d.csv", "text,label\ngood,pos\ncaf\xe9,neg\n", encoding="latin-1")
    with pytest.raises(UlmfitError, match=r"line 3, byte offset 23.*--encoding"):
        read_labeled(f)
    assert read_labeled(f, encoding="latin-1").texts[1] == "caf\xe9"
    write(tmp_path / "c" / "a" / "1.txt", "fine")
    write(tmp_path / "c" / "b" / "1.txt", b"ok\nbad \xff byte")
    with pytest.raises(UlmfitError, match=r"1\.txt.*line 2, byte offset 7.*--encoding"):
        read_labeled(tmp_path / "c")


def test_one_class_only_is_refused_for_training(tmp_path):
    f = write(tmp_path / "d.csv", "text,label\na,pos\nb,pos\n")
    d = read_labeled(f)
    with pytest.raises(UlmfitError, match=r"only one class \('pos'"):
        validate_training(d)
    with pytest.raises(UlmfitError, match=r"only one class"):
        stratified_split(d)


def test_label_seen_only_in_test_is_named(tmp_path):
    train = read_labeled(write(tmp_path / "train.csv", "text,label\na,pos\nb,neg\n"))
    test = read_labeled(write(tmp_path / "test.csv", "text,label\nc,pos\nd,neutral\ne,neutral\n"))
    with pytest.raises(UlmfitError, match=r"'neutral' \(first at .*test\.csv, line 3\) occur in the test data"):
        check_labels(train, test)
    check_labels(train, train.subset([0]))  # a subset of the classes is fine


def test_a_label_unknown_only_by_case_names_the_known_spelling(tmp_path):
    train = read_labeled(write(tmp_path / "train.jsonl", '{"text": "a", "label": true}\n{"text": "b", "label": false}\n'))
    test = read_labeled(write(tmp_path / "test.csv", "text,label\nc,True\nd,false\n"))  # as pandas writes booleans
    with pytest.raises(UlmfitError, match=r"'True' \(first at .*line 2; the known labels have 'true'\) .*case included"):
        check_labels(train, test)
    other = read_labeled(write(tmp_path / "other.csv", "text,label\nc,maybe\n"))
    with pytest.raises(UlmfitError, match=r"'maybe' \(first at [^;]*\) occur .* add training examples of them$"):
        check_labels(train, other)


def test_a_label_that_is_not_valid_unicode_is_refused_when_read(tmp_path):
    # it used to train, then fail to save with the model (safetensors' metadata is UTF-8): the run was lost
    with pytest.raises(UlmfitError, match=r"label 'caf\\udce9' is not valid text: .*lone surrogate.*rename it"):
        write(tmp_path / "d" / "tea" / "1.txt", b"a text")
        read_labeled(write(tmp_path / "d" / "caf\udce9" / "1.txt", b"a text").parent.parent)
    with pytest.raises(UlmfitError, match=r"s\.jsonl, line 1: the label '\\ud83d' is not valid text"):
        read_labeled(write(tmp_path / "s.jsonl", '{"text": "a", "label": "\\ud83d"}\n'))


def test_a_column_name_matches_its_header_in_either_unicode_form(tmp_path):
    nfd, nfc = "texte\u0301", "text\u00e9"  # "texté" with a combining accent, and composed
    data = read_labeled(write(tmp_path / "a.csv", f"{nfd},\u6807\u7b7e\nbon film,pos\nmauvais,neg\n"),
                        text_col=nfc, label_col="\u6807\u7b7e")
    assert data.texts == ["bon film", "mauvais"]
    data = read_labeled(write(tmp_path / "a.jsonl", f'{{"{nfc}": "bon", "label": "pos"}}\n'), text_col=nfd)
    assert data.texts == ["bon"]
    from ulmfit.data.corpus import iter_documents  # the language model's reader (finetune-lm --column)

    assert list(iter_documents(write(tmp_path / "u.csv", f"{nfd}\nun texte\n"), column=nfc)) == ["un texte"]
    assert list(iter_documents(write(tmp_path / "u.jsonl", f'{{"{nfd}": "un"}}\n'), column=nfc)) == ["un"]


def test_empty_file_and_file_of_blank_lines(tmp_path):
    for name in ("e.csv", "e.jsonl", "e.txt"):
        with pytest.raises(UlmfitError, match=r"empty|no examples"):
            read_labeled(write(tmp_path / name, "\n\n"))
    with pytest.raises(UlmfitError, match=r"no examples"):
        read_labeled(write(tmp_path / "h.csv", "text,label\n"))
    with pytest.raises(UlmfitError, match=r"no class folders"):
        read_labeled((tmp_path / "empty_dir").mkdir() or tmp_path / "empty_dir")
    with pytest.raises(UlmfitError, match=r"no such file"):
        read_labeled(tmp_path / "missing.csv")


def test_bad_trec_line_is_named(tmp_path):
    f = write(tmp_path / "t.label", TREC + "just a question ?\n")
    with pytest.raises(UlmfitError, match=r"line 4: not a TREC line"):
        read_labeled(f)


# ---------------------------------------------------------------------------------------------
# Split


def _data(counts):
    labels = [lab for lab, n in counts.items() for _ in range(n)]
    return LabeledTexts([f"text {i}" for i in range(len(labels))], labels, "mem", list(range(1, len(labels) + 1)))


def test_stratified_split_keeps_proportions_and_every_class_in_train():
    d = _data({"a": 50, "b": 30, "c": 7, "d": 2, "e": 1})
    train, valid = stratified_split(d, valid_frac=0.2, seed=3)
    assert sorted(train.lines + valid.lines) == d.lines  # a partition
    tc, vc = Counter(train.labels), Counter(valid.labels)
    for lab, n in {"a": 50, "b": 30, "c": 7, "d": 2}.items():
        assert abs(vc[lab] - 0.2 * n) <= 1 and vc[lab] >= 1 and tc[lab] >= 1
    assert tc["e"] == 1 and vc["e"] == 0
    assert train.lines == sorted(train.lines)  # original order kept
    again = stratified_split(d, valid_frac=0.2, seed=3)
    assert again[1].lines == valid.lines
    assert stratified_split(d, valid_frac=0.2, seed=4)[1].lines != valid.lines


def test_multi_label_split_is_random_and_complete():
    d = LabeledTexts([str(i) for i in range(20)], [["a"] if i % 2 else ["a", "b"] for i in range(20)], "mem")
    train, valid = stratified_split(d, valid_frac=0.25)
    assert len(valid) == 5 and len(train) == 15
    assert sorted(train.texts + valid.texts) == sorted(d.texts)


def test_a_multi_label_split_never_takes_the_last_training_example_of_a_label():
    # "rare" has one example, "two" two: with half the data held out, a random split used to put
    # them in validation for some seeds, and training then stopped on a label it never saw
    labels = [["a"]] * 16 + [["a", "rare"], ["two"], ["two", "a"], []]
    d = LabeledTexts([str(i) for i in range(20)], labels, "mem")
    for seed in range(30):
        train, valid = stratified_split(d, valid_frac=0.5, seed=seed)
        assert len(valid) == 10 and set(train.label_names()) == {"a", "rare", "two"}, seed
        assert sorted(train.texts + valid.texts) == sorted(d.texts)


def test_multi_label_names_are_read_as_single_labels_are_and_memory_labels_as_file_labels(tmp_path):
    f = write(tmp_path / "d.csv", 'text,label\nx,"1.0,2.0"\ny,1\nz, 2.0 \n')
    assert read_labeled(f, multi_label_sep=",").labels == [["1", "2"], ["1"], ["2"]]
    # in memory: a lone label is a one-label list, "" none, repeats once, as a JSONL file gives them
    d = LabeledTexts(["a", "b", "c", "d"], ["comedy", ["action", "romance", "action"], "", ["x", ""]], "mem")
    assert d.labels == [["comedy"], ["action", "romance"], [], ["x"]]
    assert d.label_names() == ["action", "comedy", "romance", "x"]


# ---------------------------------------------------------------------------------------------
# Rows that would be cut, glued or swallowed


@pytest.mark.parametrize("name,content,says", [
    # an unquoted comma: "The film" with the label "sadly" before the check
    ("d.csv", "text,label\ngood,pos\nThe film, sadly, was awful.,neg\n",
     r"d.csv, line 3: 4 field\(s\) where the header has 2; a text that holds a comma must be in double quotes"),
    ("d.csv", "pos,fine\nneg,The film, sadly, was awful.\npos,ok\n",
     r"line 2: 4 field\(s\) where the first row has 2"),
    # a quote that closes before the field ends: lenient csv made it "Best film"
    ("d.csv", 'text,label\ngood,pos\n"Best" film,pos\n', r"line 3: malformed ','-separated row"),
    # a quote that never closes: every row after it became one text
    ("d.csv", 'text,label\ngood,pos\n"Best film,pos\n' + "fine,neg\n" * 50, "malformed ','-separated row"),
    ("d.tsv", "text\tlabel\ngood\tpos\nBest\tfilm\tpos\n",
     r"line 3: 3 field\(s\) where the header has 2; a TSV field cannot hold a tab"),
    ("d.csv", "text,label,text\ngood,pos,x\n", "names column 'text' more than once"),
    ("d.csv", "text,label\ngood,pos\rbad,neg\r", r"a carriage return \(\\r\) inside a field that is not quoted"),
])
def test_rows_that_would_be_cut_or_merged_are_refused_with_their_line(tmp_path, name, content, says):
    f = write(tmp_path / name, content)
    with pytest.raises(UlmfitError, match=says):
        read_labeled(f)


def test_a_tsv_keeps_its_quotes_as_text_and_each_line_is_a_row(tmp_path):
    rows = ['"Best film ever\tpos', '"Best" film\tpos', 'He said "no"\tneg', 'fine\tneg']
    d = read_labeled(write(tmp_path / "d.tsv", "text\tlabel\n" + "\n".join(rows) + "\n"))
    assert d.texts == ['"Best film ever', '"Best" film', 'He said "no"', "fine"]
    assert d.labels == ["pos", "pos", "neg", "neg"] and d.lines == [2, 3, 4, 5]


def test_csv_quoting_still_reads_commas_newlines_and_doubled_quotes(tmp_path):
    f = write(tmp_path / "d.csv", 'text,label\n"Loved it, really\nsecond line",pos\n"He said ""no""",neg\n')
    d = read_labeled(f)
    assert d.texts == ["Loved it, really\nsecond line", 'He said "no"'] and d.lines == [2, 4]


def test_class_folders_include_their_subfolders_and_skip_hidden_files(tmp_path):
    write(tmp_path / "pos" / "1.txt", "great")
    write(tmp_path / "pos" / "old" / "2.txt", "superb")  # read as pos, not dropped
    write(tmp_path / "pos" / "._1.txt", b"\x00\x05\x16\x07\xff\xfe junk")  # macOS resource fork
    write(tmp_path / "neutral" / "2020" / "3.txt", "fine")  # a class with only nested documents
    write(tmp_path / "neg" / "4.txt", "awful")
    write(tmp_path / "neg" / ".ipynb_checkpoints" / "4-checkpoint.txt", "awful")
    d = read_labeled(tmp_path)
    assert sorted(zip(d.labels, d.texts)) == [("neg", "awful"), ("neutral", "fine"), ("pos", "great"),
                                              ("pos", "superb")]
    assert sorted(read_unlabeled_texts(tmp_path)) == ["awful", "fine", "great", "superb"]


def test_a_label_written_1_0_by_a_float_column_is_the_label_1(tmp_path):
    d = read_labeled(write(tmp_path / "d.csv", "text,label\na,1.0\nb,0.0\nc,1\nd,2.5\ne,10.00\n"))
    assert d.labels == ["1", "0", "1", "2.5", "10"]
    j = read_labeled(write(tmp_path / "d.jsonl", '{"text": "a", "label": 1.0}\n{"text": "b", "label": "1.0"}\n'))
    assert j.labels == ["1", "1"]


@pytest.mark.parametrize("content,says", [
    (b"\x1f\x8b\x08\x00rest", "is gzip-compressed"),
    (b"PK\x03\x04rest", "is a zip archive"),
    ("text,label\ngood,pos\n".encode("utf-16"), r"UTF-16 byte-order mark\); pass --encoding utf-16"),
    ("text,label\ngood,pos\n".encode("utf-16-le"), "holds NUL bytes"),
    (b"text,label\rgood,pos\rbad,neg\r", r"carriage return \(\\r\) alone"),
    (b'[{"text": "good", "label": "pos"}]\n', "looks like a JSON array"),
])
def test_files_that_are_not_plain_text_tables_say_what_they_are(tmp_path, content, says):
    f = write(tmp_path / "d.dat", content)
    with pytest.raises(UlmfitError, match=says):
        read_labeled(f, fmt="csv" if content[:1] != b"[" else "auto")


def test_a_stray_nul_byte_on_the_first_line_is_kept_as_on_any_other(tmp_path):
    from ulmfit.data.corpus import iter_documents

    f = write(tmp_path / "c.txt", b"a first\x00 line of text\nsecond\x00 line\n")  # it refused the file, "UTF-16?"
    assert list(iter_documents(f)) == ["a first\x00 line of text", "second\x00 line"]
    f = write(tmp_path / "d.txt", b"Title\x00 x\nsecond\n")  # a short line too
    assert list(iter_documents(f)) == ["Title\x00 x", "second"]
    for content in ("Hi\n".encode("utf-16-le"), "\u6807\u7b7e ab\n".encode("utf-16-le"), b"\x93NUMPY\x01\x00v\x00{\x00\x00"):
        with pytest.raises(UlmfitError, match="holds NUL bytes"):  # UTF-16 (short, or mostly CJK), binary
            list(iter_documents(write(tmp_path / "e.txt", content)))


def test_review_folders_that_share_their_subfolders_are_splits_not_classes(tmp_path):
    for split in ("training", "testing"):  # split names: the usual message
        write(tmp_path / "a" / split / "pos" / "1.txt", "great")
        write(tmp_path / "a" / split / "neg" / "1.txt", "awful")
    with pytest.raises(UlmfitError, match="choose one with --split"):
        read_labeled(tmp_path / "a")
    assert sorted(read_labeled(tmp_path / "a", split="training").labels) == ["neg", "pos"]
    for group in ("2019", "2020"):  # any other names that hold the same class folders
        write(tmp_path / "b" / group / "pos" / "1.txt", "great")
        write(tmp_path / "b" / group / "neg" / "1.txt", "awful")
    with pytest.raises(UlmfitError, match="2019/, 2020/ all hold the folders neg/, pos/: they look like splits"):
        read_labeled(tmp_path / "b")
    assert sorted(read_labeled(tmp_path / "b", split="2019").labels) == ["neg", "pos"]


def test_review_spreadsheet_and_pandas_habits_still_read(tmp_path):
    # a trailing delimiter on data rows; a row cut short after the columns read; both as before
    d = read_labeled(write(tmp_path / "a.csv", "text,label,notes\ngood movie,pos,\nbad movie,neg\nok,pos,,\n"))
    assert d.texts == ["good movie", "bad movie", "ok"] and d.labels == ["pos", "neg", "pos"]
    with pytest.raises(UlmfitError, match="4 field"):
        read_labeled(write(tmp_path / "b.csv", "text,label,notes\ngood,pos,,x\n"))
    # a TSV quoted as pandas / R write it: whole quoted fields are unquoted, other quotes are text
    t = write(tmp_path / "c.tsv", '"text"\t"label"\n"He said ""hi"" to me"\t"pos"\n"Best" film\tneg\n')
    d = read_labeled(t)
    assert d.texts == ['He said "hi" to me', '"Best" film'] and d.labels == ["pos", "neg"]
    # a first line that opens with a bracket but is no JSON array
    d = read_labeled(write(tmp_path / "br.txt", "[Music] good movie\tpos\nbad\tneg\n"), header=False,
                     text_col="0", label_col="1")
    assert d.texts == ["[Music] good movie", "bad"]


def test_labels_equal_as_numbers_have_one_order_whatever_the_hash_seed():
    """'1' and '01' sorted by their number alone followed the set's hash order: the saved label list,
    the validation split and a resumed run's label check changed with PYTHONHASHSEED."""
    import os
    import subprocess
    import sys

    code = "from ulmfit.data.labeled import sort_labels; print(sort_labels(['2', '1', '01', '-0', '0', '007', '7']))"
    seen = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": str(seed)}).stdout for seed in range(6)}
    assert seen == {"['-0', '0', '01', '1', '2', '007', '7']\n"}


def test_a_labels_spelling_is_one_class_and_nan_or_infinity_is_no_label(tmp_path):
    from ulmfit.data.labeled import label_name

    assert label_name("cafe\u0301") == label_name("caf\u00e9") == "caf\u00e9"  # one class, however typed
    assert label_name("+1.0") == "+1" and label_name("-1.0") == "-1" and label_name("1.0") == "1"
    (tmp_path / "nan.jsonl").write_text('{"text": "good", "label": NaN}\n{"text": "bad", "label": "neg"}\n')
    with pytest.raises(UlmfitError, match="no label|empty label|has no"):
        read_labeled(tmp_path / "nan.jsonl")
    (tmp_path / "inf.jsonl").write_text('{"text": "good", "label": Infinity}\n{"text": "bad", "label": "neg"}\n')
    with pytest.raises(UlmfitError, match="Infinity|inf is not a label"):
        read_labeled(tmp_path / "inf.jsonl")


def test_a_confusion_matrix_draws_dollar_signs_in_labels_as_text(tmp_path):
    from ulmfit.train.metrics import plot_confusion

    plot_confusion([[3, 1], [0, 2]], ["10%+ of $", "under $5"], tmp_path / "cm.png")  # was a mathtext ValueError
    assert (tmp_path / "cm.png").read_bytes()[:4] == b"\x89PNG"


def test_a_confusion_matrix_of_labels_the_font_lacks_is_drawn_without_a_warning_a_glyph(tmp_path):
    import warnings

    from ulmfit.train.metrics import plot_confusion

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        plot_confusion([[3, 1], [0, 2]], ["\u6807\u7b7e", "\U0001F600"], tmp_path / "cm.png")
    assert (tmp_path / "cm.png").read_bytes()[:4] == b"\x89PNG" and not seen, [str(w.message) for w in seen]


def test_one_list_among_plain_labels_says_the_data_is_read_as_multi_label(tmp_path, capsys):
    rows = [{"text": f"t {i}", "label": "pos" if i % 2 else "neg"} for i in range(20)]
    rows.append({"text": "x", "label": ["pos"]})
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    d = read_labeled(tmp_path / "d.jsonl")
    assert d.labels[0] == ["neg"]  # multi-label, as before
    assert "1 of 21 labels are lists, so the data is read as multi-label" in capsys.readouterr().err


def test_headerless_csv_whose_first_label_is_rare_is_guessed_a_header_out_loud(tmp_path, capsys):
    # the first example's label occurs nowhere else: read as a header (as a survey's question would
    # be, however long), and said, with how to refuse it; --no-header keeps the row
    f = write(tmp_path / "d.csv", "sport,The match ended in a draw after extra time\n"
                                  "tech,A new chip doubles the speed of phones\ntech,Another chip\n")
    assert read_labeled(f, text_col="1", label_col="0").labels == ["tech", "tech"]
    assert "read its first row ('sport', 'The match ended in a draw afte') as column names" in \
        capsys.readouterr().err
    d = read_labeled(f, text_col="1", label_col="0", header=False)
    assert d.labels == ["sport", "tech", "tech"] and d.lines == [1, 2, 3]
    assert "column names" not in capsys.readouterr().err
    q = write(tmp_path / "q.csv", "sentiment,What did you think of the film (in your own words)?\n"
                                  "pos,good\nneg,bad\n")
    assert read_labeled(q, text_col="1", label_col="0").labels == ["pos", "neg"]  # a long name is a name


def test_guessed_header_is_said_with_how_to_refuse_it(tmp_path, capsys):
    f = write(tmp_path / "d.csv", "topic,body\ntech,A new chip doubles the speed\nsport,A draw\n")
    d = read_labeled(f, text_col="1", label_col="0")
    assert d.labels == ["tech", "sport"]
    err = capsys.readouterr().err
    assert "read its first row ('topic', 'body') as column names" in err and "--no-header" in err
    # named columns settle it: nothing to say
    assert read_labeled(f, text_col="body", label_col="topic").labels == ["tech", "sport"]
    assert "column names" not in capsys.readouterr().err


def test_labels_differing_only_in_case_are_noted(tmp_path, capsys):
    f = write(tmp_path / "d.csv", "text,label\ngood,Pos\nfine,pos\nbad,neg\n")
    assert read_labeled(f).label_names() == ["Pos", "neg", "pos"]  # still three classes, as written
    assert "labels that differ only in case are different classes: 'Pos' and 'pos'" in capsys.readouterr().err
    read_labeled(write(tmp_path / "e.csv", "text,label\ngood,pos\nbad,neg\n"))
    assert "differ only in case" not in capsys.readouterr().err


def test_a_windows_csv_that_is_not_utf8_is_named_cp1252_where_that_reads_it(tmp_path):
    f = write(tmp_path / "w.csv", b"text,label\n\x93Great\x94 film \x96 loved it,pos\nbad,neg\n")
    with pytest.raises(UlmfitError, match=r"byte 0x93 at line 2.*--encoding cp1252, Windows' and Excel's"):
        read_labeled(f)
    assert read_labeled(f, encoding="cp1252").texts == ["\u201cGreat\u201d film \u2013 loved it", "bad"]
    g = write(tmp_path / "x.csv", b"text,label\nok \x81 x,pos\n")  # 0x81: no cp1252 character
    with pytest.raises(UlmfitError, match=r"e\.g\. --encoding latin-1"):
        read_labeled(g)
    # a UTF-8 file with a stray byte: cp1252 would read its UTF-8 characters as two each
    m = write(tmp_path / "m.csv", "text,label\ncafé \x93x\x94,pos\n".encode("utf-8").replace(b"\xc2\x93", b"\x93")
              .replace(b"\xc2\x94", b"\x94"))
    with pytest.raises(UlmfitError, match=r"e\.g\. --encoding latin-1"):
        read_labeled(m)


def test_utf8_sig_is_read_line_by_line_and_a_bad_byte_is_named_with_its_line(tmp_path):
    f = write(tmp_path / "s.csv", b"\xef\xbb\xbftext,label\ncaf\xc3\xa9,pos\nbad,neg\n")
    assert read_labeled(f, encoding="utf-8-sig").texts == ["caf\u00e9", "bad"]
    g = write(tmp_path / "b.csv", b"\xef\xbb\xbftext,label\nok,pos\nbad \x93x\x94,neg\n")
    with pytest.raises(UlmfitError, match="cannot decode byte 0x93 at line 3"):  # was: "at its start", no line
        read_labeled(g, encoding="utf-8-sig")
