"""Text -> tokens: the ULMFiT pre-processing rules and the word / subword tokenisers.

The paper tokenises with spaCy plus rules that keep information lower-casing would lose:
``xxmaj`` (next word capitalised), ``xxup`` (next word all caps), ``xxrep N c`` (a character
repeated N times), ``xxwrep N w`` (a word repeated N times), ``xxbos`` at the start of every
document and ``xxfld`` between the fields of a multi-field document, after an HTML clean-up.
MultiFiT's subword variant applies the same rules and then a SentencePiece unigram model.

This module never imports torch: tokenising is a CPU-parallel job done once per corpus.
"""

from __future__ import annotations

import contextlib
import html
import multiprocessing
import os
import re
import sys
import threading
import unicodedata
from dataclasses import asdict, dataclass
from typing import Iterable, Iterator, Sequence

from ..io import UlmfitError, whole_number

UNK, PAD, BOS, EOS, FLD, REP, WREP, UP, MAJ = (
    "xxunk", "xxpad", "xxbos", "xxeos", "xxfld", "xxrep", "xxwrep", "xxup", "xxmaj",
)
SPECIAL_TOKENS = [UNK, PAD, BOS, EOS, FLD, REP, WREP, UP, MAJ]
# Raised whenever a rule changes the tokens of some text: token caches built by other rules are
# not reused (2: HTML tags by name, WikiText's <unk>, invisible characters, NFC, long runs cut).
RULES_VERSION = 2


# SentencePiece's trainer takes the vocabulary size as a 32-bit int, and on a size far above what its
# text holds it can run for hours without a word (deaf to Ctrl-C); the largest vocabularies in use
# are a few hundred thousand pieces
MAX_SP_VOCAB = 1_000_000


@dataclass
class TokenizerConfig:
    """How text becomes tokens. Saved in every model's config.json so fine-tuning and
    prediction tokenise exactly as pretraining did."""

    kind: str = "word"  # "word" (spaCy + rules, the paper) or "subword" (SentencePiece unigram)
    lang: str = "en"
    max_vocab: int = 60000  # word level: vocabulary cap
    min_freq: int = 3  # word level: a token must be seen this often to get an id
    sp_vocab_size: int = 16000  # subword level: SentencePiece vocabulary size
    sp_sample_chars: int = 20_000_000  # text used to train SentencePiece
    lower: bool = True

    def __post_init__(self):  # checked before a corpus is tokenised, not after
        if isinstance(self.sp_sample_chars, float) and self.sp_sample_chars.is_integer():
            self.sp_sample_chars = int(self.sp_sample_chars)  # 5e7, as configs saved before this check hold it
        for name, low, high in (("max_vocab", len(SPECIAL_TOKENS) + 1, None), ("min_freq", 1, None),
                                ("sp_vocab_size", 10, MAX_SP_VOCAB), ("sp_sample_chars", 1, None)):
            setattr(self, name, whole_number(getattr(self, name), f"TokenizerConfig.{name}", low, high))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TokenizerConfig":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


# ---------------------------------------------------------------------------------------------
# Rules on raw text (before splitting into words)

_BR = re.compile(r"<\s*/?\s*br\b[^<>]{0,200}>", re.IGNORECASE)  # also "</br>" and <br clear="all">
# An HTML tag: a known element name and attributes written name=value (a bare word is not
# taken as an attribute), so "a<b and b>c" or "I rated it <meh>" keep their words.
_TAG_NAMES = (
    "a|abbr|acronym|address|area|article|aside|audio|b|base|basefont|bdi|bdo|big|blink|blockquote|body|button|"
    "canvas|caption|center|cite|code|col|colgroup|dd|del|details|dfn|dir|div|dl|dt|em|embed|fieldset|"
    "figcaption|figure|font|footer|form|frame|frameset|h[1-6]|head|header|hr|html|i|iframe|img|input|ins|kbd|"
    "label|legend|li|link|main|mark|marquee|meta|nav|nobr|noscript|object|ol|option|p|param|pre|q|s|samp|"
    "script|section|select|small|source|span|strike|strong|style|sub|summary|sup|table|tbody|td|textarea|"
    "tfoot|th|thead|time|title|tr|tt|u|ul|var|video|wbr"
)
# attributes written without a value ("<td nowrap>"): only these names, so "<b and b>" stays text
_BARE_ATTRS = ("async|autofocus|autoplay|checked|compact|controls|defer|disabled|hidden|ismap|loop|multiple|muted|"
               "noshade|novalidate|nowrap|open|readonly|required|reversed|selected")
_TAG = re.compile(
    r"</(?:%s)\s*>|<(?:%s)(?:\s+(?:[A-Za-z_:][-\w:.]*\s*=\s*(?:\"[^\"<>]{0,4000}\"|'[^'<>]{0,4000}'|[^\s\"'<>]{1,4000})"
    r"|(?:%s)(?![-\w:.])))*\s*/?>" % (_TAG_NAMES, _TAG_NAMES, _BARE_ATTRS), re.IGNORECASE)
_UNK_MARK = re.compile(r"<unk>")  # WikiText's unknown-word marker
# Characters that would make one word two or vanish on screen: a byte-order mark inside the text
# (files joined with cat), a zero-width space; lone surrogates (a JSON escape of half an emoji, bytes
# that were not UTF-8) that spaCy cannot encode become U+FFFD.
_INVISIBLE = re.compile("[\ufeff\u200b]")
_SURROGATE = re.compile("[\ud800-\udfff]")
# An entity whose '&' was lost upstream (IMDb has " amp; " and "#39;"), but only as a word of its
# own: "camp;" must stay "camp;".
_STRAY_ENTITY = re.compile(r"(?<![\w&])(#39|#146|#36|amp|quot|nbsp|lt|gt);")
_STRAY = {"#39": "'", "#146": "'", "#36": "$", "amp": "&", "quot": '"', "nbsp": " ", "lt": "<", "gt": ">"}
_WIKI_AT = re.compile(r" @([-.,])@ ")
_CHAR_REP = re.compile(r"(\S)(\1{3,})")
_WORD_REP = re.compile(r"(?<!\S)(\w+)((?:\s+\1){3,})(?!\S)")
_SPACE_AROUND = re.compile(r"([/#\\])")
_WS = re.compile(r"\s+")
# spaCy's prefix and suffix passes take time quadratic in a word's length: 16,000 characters of
# "});" or of emoji without a space took 25-33 s. A run of MAX_WORD_CHARS non-space characters is
# cut there (no English word is that long; such runs are code, base64 or long URLs).
MAX_WORD_CHARS = 500
_LONG_RUN = re.compile(r"\S{%d}(?=\S)" % MAX_WORD_CHARS)


def fix_html(text: str) -> str:
    """Undo the HTML and WikiText escapes that scraped text is full of."""
    # Unescape first, so "&amp;" becomes one "&" (not "&&") and "&lt;br /&gt;" is a line break.
    text = html.unescape(text)
    text = _INVISIBLE.sub("", text)
    if _SURROGATE.search(text):  # a pair of them is the character it encodes; one alone is U+FFFD
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if not unicodedata.is_normalized("NFC", text):  # "café" typed as e + combining accent is "café"
        text = unicodedata.normalize("NFC", text)
    text = _STRAY_ENTITY.sub(lambda m: _STRAY[m.group(1)], text)
    text = _BR.sub("\n", text)
    text = text.replace("\\n", "\n").replace('\\"', '"')
    text = _WIKI_AT.sub(r"\1", text)
    text = _UNK_MARK.sub(f" {UNK} ", text)
    text = _TAG.sub(" ", text)
    return text


def replace_char_repeats(text: str) -> str:
    """'coooool' -> 'c xxrep 5 o l': a character repeated 4+ times becomes xxrep N c."""

    def sub(m: re.Match) -> str:
        c, rest = m.group(1), m.group(2)
        return f" {REP} {len(rest) + 1} {c} "

    return _CHAR_REP.sub(sub, text)


def replace_word_repeats(text: str) -> str:
    """'no no no no' -> 'xxwrep 4 no': a word repeated 4+ times becomes xxwrep N w."""

    def sub(m: re.Match) -> str:
        word, rest = m.group(1), m.group(2)
        return f" {WREP} {len(rest.split()) + 1} {word} "

    return _WORD_REP.sub(sub, text)


def pre_rules(text: str, word_repeats: bool = True) -> str:
    text = fix_html(text)
    text = replace_char_repeats(text)
    if word_repeats:
        text = replace_word_repeats(text)
    text = _SPACE_AROUND.sub(r" \1 ", text)
    text = _LONG_RUN.sub(lambda m: m.group(0) + " ", text)
    return _WS.sub(" ", text).strip()


def case_rules(tokens: Iterable[str], lower: bool = True) -> list[str]:
    """Mark case with xxup / xxmaj and lower-case, so 'The' and 'the' share one embedding."""
    out: list[str] = []
    for t in tokens:
        if t in SPECIAL_TOKENS:
            out.append(t)
        elif len(t) > 1 and t.isupper() and any(c.isalpha() for c in t):
            out.extend((UP, t.lower() if lower else t))
        elif t[:1].isupper() and (len(t) == 1 or not t[1:].isupper()):
            out.extend((MAJ, t.lower() if lower else t))
        else:
            out.append(t.lower() if lower else t)
    return out


def join_fields(fields: Sequence[str]) -> str:
    """Several text columns become one document with xxfld between them."""
    return f" {FLD} ".join(f for f in fields)


# ---------------------------------------------------------------------------------------------
# Tokenisers


class WordTokenizer:
    """spaCy's rule-based English tokenizer (no model download) plus the ULMFiT rules."""

    def __init__(self, config: TokenizerConfig | None = None):
        import random

        self.config = config or TokenizerConfig()
        before = random.getstate()  # importing spaCy draws from Python's global generator: the host's
        try:                        # sequence of random numbers went on differently after a first predict
            import spacy

            nlp = spacy.blank(self.config.lang)
        except (ImportError, KeyError, ValueError) as e:
            missing = getattr(e, "name", None) if isinstance(e, ImportError) else None
            if missing == "spacy":
                raise
            if missing and not missing.startswith("spacy.lang"):  # spaCy itself failed to import
                raise UlmfitError(f"spaCy could not be imported ({e}): its installation is broken or older than "
                                  "ulmfit supports; `pip install -U 'spacy>=3.5.1'`") from None
            raise UlmfitError(f"tokenizer language {self.config.lang!r}: spaCy has no such language ({e})") from None
        finally:
            random.setstate(before)
        for special in SPECIAL_TOKENS:  # never split our own markers
            nlp.tokenizer.add_special_case(special, [{"ORTH": special}])
        self._tok = nlp.tokenizer

    def tokenize_many(self, texts: Sequence[str]) -> list[list[str]]:
        prepped = [pre_rules(t) for t in texts]
        out = []
        for doc in self._tok.pipe(prepped, batch_size=256):
            words = [t.text for t in doc if not t.is_space]
            out.append([BOS] + case_rules(words, self.config.lower))
        return out

    def tokenize(self, text: str) -> list[str]:
        return self.tokenize_many([text])[0]


class SubwordTokenizer:
    """The same rules, then a SentencePiece unigram model (MultiFiT's low-OOV variant).

    The SentencePiece vocabulary *is* the model vocabulary: specials take ids 0-8 in the
    same order as the word-level vocabulary.

    Special tokens (xxmaj, xxfld, ...) never go through SentencePiece: the text between them is
    encoded in runs and the specials' ids are put in between. Encoding "xxmaj the" in one piece
    would cost an extra lone "▁" piece before every marker.
    """

    def __init__(self, model_path: str, config: TokenizerConfig | None = None, num_threads: int = -1):
        import sentencepiece as spm

        self.config = config or TokenizerConfig(kind="subword")
        self.model_path = str(model_path)
        # num_threads=1 in worker processes, so that n workers do not each start n threads.
        self.sp = spm.SentencePieceProcessor(model_file=self.model_path, num_threads=num_threads)
        self._special_ids = {t: self.sp.piece_to_id(t) for t in SPECIAL_TOKENS}
        if list(self._special_ids.values()) != list(range(len(SPECIAL_TOKENS))):
            raise UlmfitError(
                f"{self.model_path} is not a ulmfit SentencePiece model: its first pieces are not "
                + " ".join(SPECIAL_TOKENS)
            )

    @staticmethod
    def prepare(text: str, lower: bool = True) -> str:
        return " ".join(case_rules(pre_rules(text).split(" "), lower)) if text.strip() else ""

    @staticmethod
    def _runs(prepared: str) -> list[str]:
        """Split prepared text into plain-text runs and single special tokens, in order."""
        out: list[str] = []
        run: list[str] = []
        for w in prepared.split(" "):
            if not w:
                continue
            if w in SPECIAL_TOKENS:
                if run:
                    out.append(" ".join(run))
                    run = []
                out.append(w)
            else:
                run.append(w)
        if run:
            out.append(" ".join(run))
        return out

    @classmethod
    def training_text(cls, text: str, lower: bool = True) -> str:
        """The text SentencePiece learns from: prepared text without the special tokens, which
        are never shown to it when encoding either."""
        return " ".join(r for r in cls._runs(cls.prepare(text, lower)) if r not in SPECIAL_TOKENS)

    def encode_many(self, texts: Sequence[str]) -> list[list[int]]:
        runs: list[str] = []  # every plain run of every text, encoded in one call
        plans: list[list[int]] = []  # per text: index into runs (>= 0) or ~special id (< 0)
        for text in texts:
            plan = []
            for r in self._runs(self.prepare(text, self.config.lower)):
                sid = self._special_ids.get(r)
                if sid is None:
                    plan.append(len(runs))
                    runs.append(r)
                else:
                    plan.append(~sid)
            plans.append(plan)
        encoded = self.sp.encode(runs) if runs else []
        bos = self._special_ids[BOS]
        out = []
        for plan in plans:
            ids = [bos]
            for p in plan:
                if p >= 0:
                    ids.extend(encoded[p])
                else:
                    ids.append(~p)
            out.append(ids)
        return out

    def tokenize_many(self, texts: Sequence[str]) -> list[list[str]]:
        piece = self.sp.id_to_piece
        return [[piece(i) for i in ids] for ids in self.encode_many(texts)]

    def tokenize(self, text: str) -> list[str]:
        return self.tokenize_many([text])[0]

    def vocab(self) -> list[str]:
        return [self.sp.id_to_piece(i) for i in range(self.sp.get_piece_size())]

    @staticmethod
    def train(text_file: str, model_prefix: str, vocab_size: int, max_sentences: int = 2_000_000) -> str:
        """Train a unigram model whose first ids are our special tokens; returns the .model path.

        `vocab_size` is an upper bound: a small corpus gives a smaller vocabulary rather than an
        error (hard_vocab_limit=False)."""
        import sentencepiece as spm

        try:
            spm.SentencePieceTrainer.train(
                input=text_file,
                model_prefix=model_prefix,
                vocab_size=vocab_size,
                model_type="unigram",
                character_coverage=0.9999,
                input_sentence_size=max_sentences,
                shuffle_input_sentence=True,
                max_sentence_length=1 << 15,
                unk_id=0, pad_id=1, bos_id=2, eos_id=3,
                unk_piece=UNK, pad_piece=PAD, bos_piece=BOS, eos_piece=EOS,
                user_defined_symbols=[FLD, REP, WREP, UP, MAJ],
                hard_vocab_limit=False,
                minloglevel=2,
                num_threads=max(1, min(16, os.cpu_count() or 1)),
            )
        except RuntimeError as e:
            m = re.search(r"smaller than required_chars\. (\d+) vs (\d+)", str(e))
            if m:  # its own advice names an option of its trainer, which ulmfit does not have
                raise UlmfitError(f"the text's characters alone need {int(m[2]):,} pieces (one each, with the "
                                  f"special tokens): --sp-vocab {int(m[1]):,} is too small; give it more than "
                                  f"{int(m[2]):,} (many characters: Chinese or Japanese text, or stray symbols)") from None
            raise UlmfitError(f"SentencePiece training on {text_file} failed: {e}") from e
        return model_prefix + ".model"


def detokenize(tokens: Sequence[str], subword: bool | None = None) -> str:
    """Readable text from word tokens or SentencePiece pieces (for `ulmfit generate`); `subword`:
    whether they are pieces (None: guessed from a piece that starts a word, which a short sample or
    text without spaces may lack)."""
    if subword is None:
        subword = any(t.startswith("\u2581") for t in tokens)
    words: list[str] = []
    for t in tokens:
        # Specials are whole words in both vocabularies, never parts of a SentencePiece word.
        if t.startswith("\u2581") or not words or t in SPECIAL_TOKENS or words[-1] in SPECIAL_TOKENS:
            words.append(t.lstrip("\u2581"))
        elif subword:
            words[-1] += t  # a SentencePiece continuation piece
        else:
            words.append(t)
    out: list[str] = []
    i = 0
    while i < len(words):
        w = words[i]
        nxt = words[i + 1] if i + 1 < len(words) else None
        if w in (MAJ, UP) and nxt is not None and nxt not in SPECIAL_TOKENS:
            out.append(nxt.capitalize() if w == MAJ else nxt.upper())
            i += 2
            continue
        if w in (REP, WREP) and nxt is not None and nxt.isascii() and nxt.isdigit() and i + 2 < len(words) \
                and words[i + 2] not in SPECIAL_TOKENS:  # 'xxrep 4 o' -> 'oooo', 'xxwrep 3 no' -> 'no no no'
            n, what = min(int(nxt), 50), words[i + 2]
            out.append(what * n if w == REP else " ".join([what] * n))
            i += 3
            continue
        if w in (BOS, EOS, PAD, MAJ, UP, REP, WREP, ""):  # xxunk and xxfld stay visible
            # markers with nothing to mark are dropped: a sample can end on xxmaj, and a model's
            # samples can put one marker after another ('xxmaj xxup word', 'xxrep xxmaj')
            i += 1
            continue
        out.append(w)
        i += 1
    return _join_words(out)


_NO_SPACE_BEFORE = re.compile(r" ([.,!?;:')\]}]|n't|'s|'re|'ll|'ve|'m|'d)")


def _join_words(words: list[str]) -> str:
    """Words joined by spaces, except before closing punctuation and clitics, after opening
    brackets, and inside quotes: a `"` opens and closes in turn; a lone `'` opens a quote when
    another lone one follows and it does not end a word in s or n (the students' books, rock n'
    roll), closes an open one, and otherwise ends the word before it."""
    text, glue_next, double_open, single_open = "", True, False, False
    singles_left = words.count("'")
    for k, w in enumerate(words):
        space, glue_next = not glue_next, False
        if w == '"':
            space = space and not double_open
            glue_next = not double_open
            double_open = not double_open
        elif w == "'":
            singles_left -= 1
            prev = words[k - 1] if k else ""
            if single_open:
                space, single_open = False, False
            elif singles_left and not prev[-1:].lower() in ("s", "n") and k + 1 < len(words):
                glue_next, single_open = True, True
            else:
                space = False
        elif _NO_SPACE_BEFORE.match(" " + w):
            space = False
        if w in ("(", "[", "{"):
            glue_next = True
        text += (" " if space else "") + w
    return text


def join_continuation(prompt: str, continuation: str, glue: bool = False) -> str:
    """`prompt` as the user typed it, then a generated `continuation` (detokenized), with no space
    before the continuation's opening punctuation or clitic; `glue`: none at all (a SentencePiece
    continuation of the prompt's last word)."""
    head = prompt.rstrip()
    if not head or not continuation:
        return continuation or prompt
    return head + ("" if glue or _NO_SPACE_BEFORE.match(" " + continuation) else " ") + continuation


# ---------------------------------------------------------------------------------------------
# Parallel map: tokenising WikiText-103 on one core takes hours; it is embarrassingly parallel.


def make_tokenizer(config: TokenizerConfig, sp_model: str | None = None, num_threads: int = -1):
    """The tokenizer a config describes (a SentencePiece model file is needed for subwords)."""
    if config.kind == "word":
        return WordTokenizer(config)
    if config.kind == "subword":
        if not sp_model:
            raise UlmfitError("a subword tokenizer needs a SentencePiece model (sp_model)")
        return SubwordTokenizer(sp_model, config, num_threads=num_threads)
    raise UlmfitError(f"unknown tokenizer kind {config.kind!r}: use 'word' or 'subword'")


def _apply(tok, texts: Sequence[str]) -> list:
    # Word level hands back tokens (the vocabulary is built from them later); subword level hands
    # back ids directly, since the SentencePiece model fixes the vocabulary.
    return tok.encode_many(texts) if isinstance(tok, SubwordTokenizer) else tok.tokenize_many(texts)


_worker_tok = None  # one tokenizer per worker process, built once by _init_worker


def _init_worker(config: dict, sp_model: str | None) -> None:
    global _worker_tok
    import signal

    # Ctrl-C (a terminal's, or a Jupyter kernel's interrupt) reaches the whole process group: the
    # parent stops and ends the pool; a worker that raised too printed a traceback of its own each
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker_tok = make_tokenizer(TokenizerConfig.from_dict(config), sp_model, num_threads=1)


def _work(texts: list[str]) -> list:
    return _apply(_worker_tok, texts)


# A text longer than PIECE_CHARS is tokenised in pieces of about that size, cut at whitespace, and
# its tokens joined again: spaCy's memory for one text grows with its length (a corpus that is a
# single 50 MB line, text8-style, took 3.1 GB in one process; in pieces it takes what a corpus of
# lines takes). A worker's task holds at most `chunk_docs` texts and about CHUNK_CHARS characters.
PIECE_CHARS = 100_000
CHUNK_CHARS = 4_000_000


_CUTS = (re.compile(r"\n\s*"), re.compile(r"(?<=[.!?])\s+"), re.compile(r"\s+"))  # paragraph, sentence, word


def _safe_cut(t: str, start: int, end: int, lenient: bool = False) -> bool:
    """Whether ending a piece at the whitespace t[start:end] gives the tokens of the whole text:
    the words on either side, as the text rules leave them, are not the same word (a run of
    repeats becomes one xxwrep), hold no markup or escape ("@-@", entities, a literal backslash-n),
    the next piece starts with a letter or digit (unless `lenient`: spaCy splits a few words that
    start with punctuation by the word before them), and the cut is not inside an HTML tag (tags
    span spaces)."""
    raw_before, raw_after = t[max(0, start - 300):start], t[end:end + 300]
    before, after = raw_before.rsplit(None, 1), raw_after.split(None, 1)
    if not before or not after or before[-1] == after[0]:
        return False
    if any(c in before[-1] + after[0] for c in "@<>&;\\"):
        return False
    back = html.unescape(t[max(0, start - 2000):start])  # "&lt;" is a "<" to the tag rule
    if back.rfind("<") > back.rfind(">"):
        return False
    # the words as the rules before the word-repeat rule leave them: "wow!!!!ha" ends in "ha", the
    # word that a run "ha ha ha ..." after it repeats, so the run would start before the cut
    before = pre_rules(raw_before, word_repeats=False).rsplit(None, 1)
    after = pre_rules(raw_after, word_repeats=False).split(None, 1)
    # spaCy splits a word that starts with punctuation by what came before it (":)x" is ":)" "x"
    # alone, ":" ")" "x" after a ")"), so a piece starts at a word that starts with a letter or digit
    return bool(before and after) and before[-1] != after[0] and (lenient or after[0][:1].isalnum())


def _cut(t: str, lo: int, hi: int) -> int:
    """Where to end a piece of `t` that should end within [lo, hi): the last safe paragraph break
    there, else sentence end, else space (`_safe_cut`); if there is none (a run of one repeated
    word, a text without spaces), the first safe space after hi, else the end of the text."""
    window = t[lo:hi]
    for lenient in (False, True):  # a text whose every word starts with punctuation ('"word"', "(1") has
        for pattern in _CUTS:      # no cut before a letter: it is cut as before that rule, not kept whole
            found = list(pattern.finditer(window))
            for m in reversed(found if lenient else found[-200:]):  # (the strict pass: the last 200)
                if _safe_cut(t, lo + m.start(), lo + m.end(), lenient):
                    return lo + m.start()
    for m in _CUTS[-1].finditer(t, hi):
        if _safe_cut(t, m.start(), m.end()):
            return m.start()
    return len(t)


def _pieces(texts: Iterable[str]) -> Iterator[tuple[str, bool]]:
    """(piece, starts a text) for every text; a long one cut at whitespace (`_cut`), so that its
    pieces give the tokens of the whole."""
    for t in texts:
        start, first = 0, True
        while first or start < len(t):
            end = len(t)
            if len(t) - start > PIECE_CHARS:  # the whitespace starts the next piece; tokenisers drop it
                end = _cut(t, start + PIECE_CHARS // 2, start + PIECE_CHARS)
            yield t[start:end], first
            start, first = end, False


def _chunks(pieces: Iterable[tuple[str, bool]], size: int) -> Iterator[tuple[list[str], list[bool]]]:
    chunk: list[str] = []
    starts: list[bool] = []
    chars = 0
    for piece, first in pieces:
        chunk.append(piece)
        starts.append(first)
        chars += len(piece)
        if len(chunk) >= size or chars >= CHUNK_CHARS:
            yield chunk, starts
            chunk, starts, chars = [], [], 0
    if chunk:
        yield chunk, starts


def _joined(pieces: Iterable[tuple[list, bool]]) -> Iterator[list]:
    """Each text's result from (result, starts a text) of its pieces (each result starts with xxbos)."""
    current = None
    for r, first in pieces:
        if first:
            if current is not None:
                yield current
            current = list(r)
        else:
            current.extend(r[1:])
    if current is not None:
        yield current


def tokenize_in_process(tok, texts: Iterable[str]) -> list:
    """`_apply` over texts in this process, long texts in pieces (see PIECE_CHARS)."""
    return list(_joined((r, first) for chunk, starts in _chunks(_pieces(texts), 10**9)
                        for r, first in zip(_apply(tok, chunk), starts)))


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        n = max(1, os.cpu_count() or 1)
        # Windows waits on at most 63 handles: a pool of more processes fails there (as
        # concurrent.futures, which caps its own at 61)
        return min(n, 61) if sys.platform == "win32" else n


def tokenize_parallel(
    texts: Iterable[str],
    config: TokenizerConfig,
    sp_model: str | None = None,
    *,
    n_workers: int | None = None,
    chunk_docs: int = 2000,
    desc: str = "tokenizing",
    progress: bool = True,
    pieces: bool = False,
) -> Iterator:
    """Tokenise documents in worker processes; yield one result per document, in input order
    (with `pieces`, (result, starts a document) per piece of a long document, see PIECE_CHARS:
    a consumer that writes as it goes need not hold a long document's tokens at once).

    Word level yields token lists, subword level id lists; both start with xxbos, so an empty text
    gives just [xxbos] (the caller decides whether to skip it). `texts` is consumed lazily, at most
    two chunks per worker ahead of the consumer, so a corpus never has to fit in memory.

    Workers are spawned (see below) without re-running the caller's main module, so a script needs
    no ``if __name__ == "__main__":`` guard. A corpus of less than one chunk is tokenised
    in-process: starting workers would cost more than it saves.
    """
    results = _parallel_pieces(texts, config, sp_model, n_workers, chunk_docs, desc, progress)
    return results if pieces else _joined(results)


def _parallel_pieces(texts, config, sp_model, n_workers, chunk_docs, desc, progress) -> Iterator[tuple[list, bool]]:
    """tokenize_parallel's work: (result, starts a text) for every piece, in input order."""
    from collections import deque

    from ..progress import progress_bar

    # More processes than 4 per core only cost memory (a spaCy each) for a CPU-bound job; Windows
    # waits on at most 63 handles
    most = min(4 * default_workers(), 61) if sys.platform == "win32" else 4 * default_workers()
    n_workers = default_workers() if n_workers is None else \
        min(whole_number(n_workers, "n_workers (tokeniser processes)"), most)
    if multiprocessing.current_process().daemon:  # a worker of a Pool (a service's): it may start no
        n_workers = 1                             # processes of its own ("daemonic processes are not allowed")
    chunks = _chunks(_pieces(texts), chunk_docs)
    # counted in characters, which a single long text also advances; the postfix counts texts
    bar = progress_bar(desc=desc, unit=" chars", unit_scale=True, disable=not progress, smoothing=0.1)
    n_done = 0

    def done(chunk, starts, results):
        nonlocal n_done
        n_done += sum(starts)
        bar.update(sum(len(p) for p in chunk))
        bar.set_postfix(docs=f"{n_done:,}", refresh=False)
        return zip(results, starts)

    try:
        first = next(chunks, None)
        if first is None:
            return
        second = next(chunks, None)
        chunks = _prepend(first, _prepend(second, chunks) if second is not None else iter(()))
        if n_workers <= 1 or second is None:
            # One process, or a corpus of a single chunk: starting workers would only cost time.
            tok = make_tokenizer(config, sp_model)
            for chunk, starts in chunks:
                yield from done(chunk, starts, _apply(tok, chunk))
            return
        import multiprocessing as mp

        # 'spawn', not 'fork': the caller may already run torch (OpenMP threads, locks) and a forked
        # copy of a threaded process can deadlock. Workers import only this module and spaCy.
        ctx = mp.get_context("spawn")
        with _main_not_rerun():
            pool = ctx.Pool(n_workers, _init_worker, (config.to_dict(), sp_model))
        with pool:
            pending: deque = deque()
            for chunk, starts in chunks:
                pending.append((chunk, starts, pool.apply_async(_work, (chunk,))))
                if len(pending) >= 2 * n_workers:
                    chunk, starts, res = pending.popleft()
                    yield from done(chunk, starts, res.get())
            while pending:
                chunk, starts, res = pending.popleft()
                yield from done(chunk, starts, res.get())
    finally:
        bar.close()


_MAIN_LOCK = threading.Lock()


@contextlib.contextmanager
def _main_not_rerun():
    """Start spawned workers without re-running the caller's main module. A spawned process imports
    `__main__` again (by its module name, else its file) to find what it defines; these workers need
    only this module, and in a script without the ``if __name__ == "__main__":`` guard the import
    runs the script again in every worker, which tries to start workers of its own, fails, and the
    pool waits forever. Hiding the name and the file while the workers start skips that import.
    The lock makes pools started from several threads at once take turns, so none of them restores
    what another has hidden. (A worker the pool replaces later, after a crash, starts normally.)"""
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    with _MAIN_LOCK:
        spec, has_file, file = main.__dict__.get("__spec__"), "__file__" in main.__dict__, main.__dict__.get("__file__")
        try:
            main.__spec__ = None
            if has_file:
                del main.__file__
            yield
        finally:
            main.__spec__ = spec
            if has_file:
                main.__file__ = file


def _prepend(first, rest: Iterator) -> Iterator:
    yield first
    yield from rest
