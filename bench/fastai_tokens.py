"""How far ulmfit's word tokens are from fastai's, on the benchmark texts.

A model imported with `ulmfit import-fastai` reads text through ulmfit's tokeniser; this measures
how often its tokens differ from those fastai itself would give (fastai 2's rules, spaCy in both),
and which differences are most common.

Set-up of fastai in its own environment (as for bench/fastai_compare.py):

    python3 -m venv /tmp/fastai-venv && /tmp/fastai-venv/bin/pip install torch==2.13.0
    /tmp/fastai-venv/bin/pip install fastai==2.8.12 -c bench/constraints.txt

Run (a minute; the datasets come from `ulmfit data get NAME`):

    .venv/bin/python bench/fastai_tokens.py --fastai-python /tmp/fastai-venv/bin/python
"""

from __future__ import annotations

import argparse
import collections
import csv
import difflib
import json
import subprocess
import sys
import tempfile
from pathlib import Path


def read_texts(path: str, n: int) -> list[str]:
    csv.field_size_limit(sys.maxsize)
    with open(path, encoding="utf-8", newline="") as f:
        return [row["text"] for row, _ in zip(csv.DictReader(f), range(n))]


def fastai_side(src: str, n: int, out: str) -> None:
    """(fastai's environment) fastai's tokens of the first n texts of a CSV."""
    from fastai.text.core import SpacyTokenizer, Tokenizer

    tok = Tokenizer(SpacyTokenizer())
    Path(out).write_text(json.dumps([[t.replace("\u2581", " ") for t in tok(x)] for x in read_texts(src, n)]))


def compare(ours: list[list[str]], theirs: list[list[str]], top: int) -> dict:
    same = sum(a == b for a, b in zip(ours, theirs, strict=True))
    differing, kinds = 0, collections.Counter()
    for a, b in zip(ours, theirs):
        for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
            if op != "equal":
                differing += max(i2 - i1, j2 - j1)
                kinds[f"{' '.join(a[i1:i2][:4])!r} -> fastai {' '.join(b[j1:j2][:4])!r}"] += 1
    total = sum(len(a) for a in ours)
    return {"docs": len(ours), "docs_identical": same, "tokens": total, "tokens_differing": differing,
            "share_differing": round(differing / max(total, 1), 4), "most_common": kinds.most_common(top)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fastai-python", default="/tmp/fastai-venv/bin/python")
    p.add_argument("--datasets", nargs="+", default=["rotten-tomatoes", "bbc-news", "20newsgroups"])
    p.add_argument("-n", type=int, default=1000, help="texts per dataset (default: 1000)")
    p.add_argument("--top", type=int, default=12)
    p.add_argument("--fastai-side", nargs=3, metavar=("CSV", "N", "OUT"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.fastai_side:
        fastai_side(a.fastai_side[0], int(a.fastai_side[1]), a.fastai_side[2])
        return 0
    from fastai_env import check_fastai_python
    from ulmfit import datasets
    from ulmfit.text.tokenize import TokenizerConfig, WordTokenizer

    check_fastai_python(a.fastai_python)
    tok = WordTokenizer(TokenizerConfig())
    with tempfile.TemporaryDirectory() as work:
        for name in a.datasets:
            src = str(datasets.get(name, quiet_when_cached=True) / "train.csv")
            out = str(Path(work) / f"{name}.json")
            subprocess.run([a.fastai_python, __file__, "--fastai-side", src, str(a.n), out], check=True)
            res = compare([tok.tokenize(x) for x in read_texts(src, a.n)], json.loads(Path(out).read_text()), a.top)
            print(f"== {name}: {res['docs_identical']}/{res['docs']} texts tokenised identically; "
                  f"{res['tokens_differing']:,} of {res['tokens']:,} tokens differ ({res['share_differing']:.2%})")
            for kind, count in res["most_common"]:
                print(f"  {count:6d}  {kind}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
