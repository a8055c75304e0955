"""`ulmfit import-fastai` against fastai itself: a language model built and saved by fastai gives the
same next-token logits after import.

fastai's published WikiText-103 models cannot be fetched on the development machine (no web), so
this check has fastai build AWD-LSTM language models with its own code (`get_language_model`,
random weights, a vocabulary from its own `make_vocab`, so its special-token order and its
`xxfake` padding), save them as a bare state dict (the wt103 files' form, and `learn.save(name, with_opt=False)`'s)
and as a {'model', 'opt'} dict (`Learner.save`'s form; the optimizer state here holds no fastai
objects, which the import refuses to unpickle), and record its logits on fixed token sequences. ulmfit then
imports each and must reproduce the logits of every token it kept.

Set-up of fastai in its own environment (as for bench/fastai_compare.py):

    python3 -m venv /tmp/fa/venv && /tmp/fa/venv/bin/pip install torch==2.13.0 fastai

Run (a few seconds):

    .venv/bin/python bench/fastai_import_check.py --fastai-python /tmp/fa/venv/bin/python
"""

from __future__ import annotations

import argparse
import json
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

SHAPES = [dict(emb_sz=48, n_hid=96, n_layers=3), dict(emb_sz=32, n_hid=40, n_layers=2)]


def make(work: Path) -> None:
    """(fastai's environment) Language models saved by fastai, and its logits on fixed ids."""
    from collections import Counter

    import torch
    from fastai.text.all import AWD_LSTM, awd_lstm_lm_config, get_language_model, make_vocab
    from fastai.text.learner import clean_raw_keys

    words = Counter({f"w{i}": 1000 - i for i in range(301)})  # 9 special tokens + 301 words, padded to 312
    itos = make_vocab(words, min_freq=1)
    for n, shape in enumerate(SHAPES):
        torch.manual_seed(n)
        m = get_language_model(AWD_LSTM, len(itos), config={**awd_lstm_lm_config, **shape})
        with torch.no_grad():  # fastai starts its biases at zero; the check needs them to matter
            for k, p in m.named_parameters():
                if k.endswith("bias") or "bias_" in k:
                    p.normal_(0, 0.1)
        m.eval()
        m.reset()
        # ids of tokens a text can give: not the repeated padding tokens (xxfake), which ulmfit drops
        firsts = torch.tensor([i for i, t in enumerate(itos) if t != "xxfake"])
        ids = firsts[torch.randint(0, len(firsts), (3, 25), generator=torch.Generator().manual_seed(n))]
        with torch.no_grad():
            logits = m(ids)[0]
        d = work / f"model{n}"
        d.mkdir(parents=True, exist_ok=True)
        sd = m.state_dict()
        torch.save(sd, d / "lm_fwd.pth")  # the wt103 files' form: a bare state dict
        with open(d / "itos.pkl", "wb") as f:
            pickle.dump(list(itos), f)
        torch.save({"model": clean_raw_keys(dict(sd)), "opt": {"state": {}, "param_groups": []}},
                   work / f"model{n}-learner.pth")  # Learner.save's form (a plain optimizer state)
        torch.save({"ids": ids, "logits": logits, "itos": list(itos)}, work / f"reference{n}.pt")


def check(work: Path) -> list[dict]:
    """(ulmfit's environment) Import each model and compare its logits with fastai's."""
    import torch

    from ulmfit import checkpoint as ckpt
    from ulmfit.fastai_import import import_fastai_lm

    rows = []
    for n, shape in enumerate(SHAPES):
        ref = torch.load(work / f"reference{n}.pt", weights_only=True)
        for form, src, vocab in (("state dict", work / f"model{n}", None),
                                 ("{model, opt}", work / f"model{n}-learner.pth", work / f"model{n}" / "itos.pkl")):
            out = work / f"imported{n}-{form.replace(' ', '').replace('.', '')}"
            info = import_fastai_lm(src, out, vocab=vocab, backwards=False)
            model, _, vocab_u = ckpt.load_model(out)
            itos = ref["itos"]
            ids = torch.tensor([[vocab_u.stoi[itos[i]] for i in row] for row in ref["ids"].tolist()])
            model.reset()
            with torch.no_grad():
                ours = model(ids)
            # fastai's columns of the tokens ulmfit kept, in ulmfit's order (without the xxfake padding)
            cols = [itos.index(t) for t in vocab_u.itos]
            diff = (ours - ref["logits"][:, :, cols]).abs().max().item()
            rows.append({"model": n, **shape, "form": form, "vocab": len(itos), "kept": len(vocab_u),
                         "dropped": info["dropped_tokens"], "max_abs_diff": diff})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fastai-python", help="the Python of an environment with fastai installed")
    p.add_argument("--role", choices=["make", "check"], help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.role == "make":
        make(Path(a.work))
        return 0
    if not a.fastai_python:
        p.error("--fastai-python is required")
    from fastai_env import check_fastai_python

    check_fastai_python(a.fastai_python)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        subprocess.run([a.fastai_python, __file__, "--role", "make", "--work", str(work)], check=True)
        rows = check(work)
    print("| model | emb | hidden | layers | saved as | fastai vocabulary | kept | largest logit difference |")
    print("|---|---:|---:|---:|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['emb_sz']} | {r['n_hid']} | {r['n_layers']} | {r['form']} | {r['vocab']} | "
              f"{r['kept']} | {r['max_abs_diff']:.2e} |")
    ok = all(r["max_abs_diff"] < 1e-5 for r in rows)
    print(json.dumps({"ok": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
