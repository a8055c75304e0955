#!/usr/bin/env python
"""ulmfit against fastai, the reference implementation of ULMFiT, on the same task and machine.

Both libraries run ULMFiT stages 2 and 3 the way their documentation shows, from the same
pretrained weights (the shipped `general-en-fwd` AWD-LSTM, converted to fastai's key names and
vocabulary format), on the same Rotten Tomatoes training texts, with the same shapes and epochs:

- LM fine-tuning: batch 64, BPTT 70, 1 epoch with only the embedding/decoder trainable, then 1
  epoch of the whole model (fastai: `language_model_learner` + `fit_one_cycle(1, 2e-2)`, `unfreeze`,
  `fit_one_cycle(1, 2e-3)` as in its text tutorial; ulmfit: `finetune_lm` with its defaults for the
  rates and schedule). Both take 10% of the text for validation and build the vocabulary from the
  target text (min_freq 3; ulmfit with `keep_base_vocab="no"`, so both decoders have the size of
  the target text's vocabulary, not 30,000 rows against ~4,000).
- Classifier: batch 32, gradual unfreezing 1 + 1 + 1 + 2 epochs (fastai: the tutorial's
  `fit_one_cycle` with `freeze_to(-2)`, `freeze_to(-3)`, `unfreeze` and its rates; ulmfit:
  `train_classifier` with its defaults), 10% of the labels held out for validation.
- Prediction: the test texts through each library's own inference path.

Each library runs in a fresh process of its own Python: ulmfit in the project's .venv under
jemalloc (as the `ulmfit` command runs), fastai in a separate virtual environment (its
dependencies, torchvision among them, are not the project's), with the system allocator as a
fastai user gets it and, as a second variant, under the same jemalloc, so that the allocator's
share of the difference shows. The libraries build different vocabularies from the same text
(ulmfit keeps every word the pretrained model knows, fastai only words seen 3 times), and the
decoder's size is part of an LM step's cost; a third fastai variant (`fastai-samevocab`, under
jemalloc) fine-tunes with ulmfit's vocabulary, so that its LM has exactly ulmfit's shapes. Runs alternate between variants; each phase's wall time includes
its tokenisation, data loading, validation and saving, as a user waits for it.

Set-up of the fastai environment (once; torch pinned so pip never replaces the CPU build):

    python3 -m venv /tmp/fastai-venv
    /tmp/fastai-venv/bin/pip install torch==2.13.0
    /tmp/fastai-venv/bin/pip install fastai==2.8.12 -c bench/constraints.txt

Usage::

    .venv/bin/python bench/fastai_compare.py run --fastai-python /tmp/fastai-venv/bin/python --reps 3
    .venv/bin/python bench/fastai_compare.py report
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "fastai_compare.jsonl"
VARIANTS = ("ulmfit", "fastai", "fastai-jemalloc", "fastai-samevocab")

LM_BS, BPTT, CLF_BS = 64, 70, 32
# fastai's text tutorial (docs.fast.ai, "Text transfer learning"): rates and momentum schedule
FASTAI_LM = {"frozen_lr": 2e-2, "lr": 2e-3}
FASTAI_CLF = [(None, 1, 2e-2), (-2, 1, 1e-2), (-3, 1, 5e-3), (0, 2, 1e-3)]  # (freeze_to, epochs, top rate)
FASTAI_MOMS = (0.8, 0.7, 0.8)


# ----------------------------------------------------------------------------------------------
# preparation (project venv)

def prepare(work: Path, n_train: int, seed: int) -> dict:
    """Training subset, test set and the shipped forward LM in fastai's format, under `work`."""
    import random

    import torch
    from safetensors.torch import load_file

    from ulmfit import datasets
    from ulmfit.data.labeled import read_labeled
    from ulmfit.pretrained import default_lm

    work.mkdir(parents=True, exist_ok=True)
    folder = datasets.get("rotten-tomatoes", progress=False)
    train, test = read_labeled(folder / "train.csv"), read_labeled(folder / "test.csv")
    idx = sorted(random.Random(seed).sample(range(len(train)), min(n_train, len(train))))
    _write_csv(work / "train.csv", [train.texts[i] for i in idx], [train.labels[i] for i in idx])
    _write_csv(work / "test.csv", list(test.texts), list(test.labels))

    lm = default_lm()
    sd = {k: v.float() for k, v in load_file(str(lm / "model.safetensors")).items()}
    fa = to_fastai_lm_state(sd)
    models = work / "fastai-models"
    models.mkdir(exist_ok=True)
    torch.save(fa, models / "general_en_fwd.pth")
    vocab = (lm / "vocab.txt").read_text(encoding="utf-8").split("\n")
    vocab = vocab[:-1] if vocab and vocab[-1] == "" else vocab
    with open(models / "general_en_fwd.pkl", "wb") as f:  # fastai reads its vocabulary as a pickled list
        pickle.dump(vocab, f)
    # reference: ulmfit's next-token logits (eval mode) on fixed ids; fastai must reproduce them
    from ulmfit import checkpoint as ckpt
    model, _, _ = ckpt.load_model(lm)
    model.float().eval()
    ids = torch.randint(10, len(vocab), (2, 30), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.save({"ids": ids, "logits": model(ids)}, models / "reference.pt")
    arch = json.loads((lm / "config.json").read_text())["arch"]
    info = {"n_train": len(idx), "n_test": len(test), "seed": seed, "lm": str(lm),
            "emb": arch["emb_size"], "hidden": arch["hidden_size"], "layers": arch["n_layers"],
            "vocab_pretrained": len(vocab)}
    (work / "prepared.json").write_text(json.dumps(info, indent=2))
    return info


def to_fastai_lm_state(sd: dict) -> dict:
    """An ulmfit AWD-LSTM language model's state dict under fastai's keys (`get_language_model`),
    in fastai's order: fastai's `load_ignore_keys` matches tensors to its own by position, not name.
    The tied embedding fills fastai's three copies (encoder, embedding dropout, decoder)."""
    emb = sd["encoder.embedding.weight"]
    # fastai loads these by position (load_ignore_keys zips them with its own state dict): its order
    fa = {"0.encoder.weight": emb, "0.encoder_dp.emb.weight": emb}
    n_layers = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("encoder.rnns."))
    for i in range(n_layers):
        p = f"encoder.rnns.{i}."
        fa[f"0.rnns.{i}.weight_hh_l0_raw"] = sd[p + "weight_hh"]
        fa[f"0.rnns.{i}.module.weight_ih_l0"] = sd[p + "weight_ih"]
        fa[f"0.rnns.{i}.module.bias_ih_l0"] = sd[p + "bias_ih"]
        fa[f"0.rnns.{i}.module.bias_hh_l0"] = sd[p + "bias_hh"]
    fa.update({"1.decoder.weight": emb, "1.decoder.bias": sd["decoder.decoder.bias"]})
    return fa


def _write_csv(path: Path, texts, labels) -> None:
    import csv
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(zip(texts, labels))


# ----------------------------------------------------------------------------------------------
# workers: one library, one fresh process, phases timed as a user waits for them

def _peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, kids) / 1024, 1)


def worker_ulmfit(work: Path, out: Path) -> dict:
    import torch

    from ulmfit.api import finetune_lm
    from ulmfit.classifier_api import TextClassifier, train_classifier
    from ulmfit.data.labeled import read_labeled
    from ulmfit.pretrained import default_lm
    from ulmfit.train.classify import ClassifierTrainConfig
    from ulmfit.train.loop import LMTrainConfig

    res: dict = {"threads": torch.get_num_threads()}
    t = time.time()
    lm_cfg = LMTrainConfig(freeze_epochs=1, freeze_lr=1e-2, epochs=1, lr=4e-3, bs=LM_BS, bptt=BPTT)
    r = finetune_lm(default_lm(), work / "train.csv", out / "lm", fmt="csv", column="text", train_cfg=lm_cfg,
                    keep_base_vocab="no", progress=False, overwrite=True)
    res["lm_s"] = time.time() - t
    res["lm_perplexity"] = r.get("valid_perplexity")
    res["vocab"] = len((out / "lm" / "vocab.txt").read_text(encoding="utf-8").splitlines())
    t = time.time()
    # min_last_steps=0: the last stage runs its 2 epochs, as fastai's does, whatever --n-train is
    train_classifier(out / "lm", work / "train.csv", out / "clf",
                     cfg=ClassifierTrainConfig(bs=CLF_BS, min_last_steps=0), progress=False, overwrite=True)
    res["clf_s"] = time.time() - t
    t = time.time()
    rep = TextClassifier.load([out / "clf"]).evaluate(read_labeled(work / "test.csv"))
    res["predict_s"] = time.time() - t
    res["accuracy"] = rep["accuracy"]
    return res


def worker_fastai(work: Path, out: Path, same_vocab: bool = False) -> dict:
    import pandas as pd
    import torch
    from fastai.text.all import (AWD_LSTM, Perplexity, TextDataLoaders, accuracy, awd_lstm_clas_config,
                                 awd_lstm_lm_config, language_model_learner, set_seed, text_classifier_learner)

    info = json.loads((work / "prepared.json").read_text())
    shape = {"emb_sz": info["emb"], "n_hid": info["hidden"], "n_layers": info["layers"]}
    res: dict = {"threads": torch.get_num_threads()}
    df = pd.read_csv(work / "train.csv", keep_default_na=False)
    out.mkdir(parents=True, exist_ok=True)
    models = (work / "fastai-models").resolve()

    set_seed(0)
    t = time.time()
    vocab = None
    if same_vocab:  # ulmfit's fine-tuning vocabulary (a ulmfit run of this work folder wrote it): equal shapes
        vocab = (work / "runs" / "ulmfit" / "lm" / "vocab.txt").read_text(encoding="utf-8").splitlines()
    dls_lm = TextDataLoaders.from_df(df, text_col="text", is_lm=True, valid_pct=0.1, seed=0, bs=LM_BS,
                                     seq_len=BPTT, path=out, text_vocab=vocab)
    learn = language_model_learner(dls_lm, AWD_LSTM, config={**awd_lstm_lm_config, **shape},
                                   pretrained_fnames=[str(models / "general_en_fwd")] * 2,
                                   metrics=[accuracy, Perplexity()], path=out)
    learn.fit_one_cycle(1, FASTAI_LM["frozen_lr"], moms=FASTAI_MOMS)
    learn.unfreeze()
    learn.fit_one_cycle(1, FASTAI_LM["lr"], moms=FASTAI_MOMS)
    learn.save_encoder("ft_enc")
    res["lm_s"] = time.time() - t
    res["lm_perplexity"] = float(learn.recorder.values[-1][-1])
    res["vocab"] = len(dls_lm.vocab)

    t = time.time()
    dls = TextDataLoaders.from_df(df, text_col="text", label_col="label", valid_pct=0.1, seed=0, bs=CLF_BS,
                                  text_vocab=dls_lm.vocab, path=out)
    clf = text_classifier_learner(dls, AWD_LSTM, seq_len=BPTT, max_len=20 * BPTT, drop_mult=0.5, pretrained=False,
                                  config={**awd_lstm_clas_config, **shape}, metrics=accuracy, path=out)
    clf.load_encoder("ft_enc")
    clf.freeze()
    for freeze_to, epochs, lr in FASTAI_CLF:
        if freeze_to == 0:
            clf.unfreeze()
        elif freeze_to is not None:
            clf.freeze_to(freeze_to)
        clf.fit_one_cycle(epochs, lr if freeze_to is None else slice(lr / 2.6 ** 4, lr), moms=FASTAI_MOMS)
    clf.save("clf")
    res["clf_s"] = time.time() - t

    t = time.time()
    test = pd.read_csv(work / "test.csv", keep_default_na=False)
    preds, _ = clf.get_preds(dl=clf.dls.test_dl(test["text"]))
    vocab = list(clf.dls.vocab[1])
    pred = [vocab[i] for i in preds.argmax(1).tolist()]
    res["predict_s"] = time.time() - t
    res["accuracy"] = sum(p == str(y) for p, y in zip(pred, test["label"].astype(str))) / len(test)
    return res


def check_fastai(work: Path) -> dict:
    """The converted weights in fastai's AWD-LSTM give ulmfit's logits: both libraries start from
    the same model. Largest absolute difference of the logits on the reference ids."""
    import torch
    from fastai.text.all import AWD_LSTM, awd_lstm_lm_config, get_language_model
    from fastai.text.learner import clean_raw_keys, load_ignore_keys

    info = json.loads((work / "prepared.json").read_text())
    models = work / "fastai-models"
    cfg = {**awd_lstm_lm_config, "emb_sz": info["emb"], "n_hid": info["hidden"], "n_layers": info["layers"]}
    m = get_language_model(AWD_LSTM, info["vocab_pretrained"], config=cfg)
    load_ignore_keys(m, clean_raw_keys(torch.load(models / "general_en_fwd.pth")))
    ref = torch.load(models / "reference.pt")
    m.eval()
    m.reset()
    with torch.no_grad():
        logits = m(ref["ids"])[0]
    return {"max_abs_diff": (logits - ref["logits"]).abs().max().item()}


# ----------------------------------------------------------------------------------------------
# the driver (project venv)

def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def spawn(variant: str, work: Path, fastai_python: str, timeout: float) -> dict:
    from ulmfit.cli import JEMALLOC_CONF, allocator_env

    python = sys.executable if variant == "ulmfit" else fastai_python
    env = allocator_env(None if variant == "fastai" else JEMALLOC_CONF)
    out = work / "runs" / variant
    cmd = [python, str(Path(__file__).resolve()), "worker", "--lib", variant.split("-")[0],
           "--work", str(work), "--out", str(out)] + (["--same-vocab"] if variant == "fastai-samevocab" else [])
    load0 = os.getloadavg()[0]
    t = time.time()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.time() - t
    if p.returncode != 0:
        raise RuntimeError(f"{variant} worker failed ({p.returncode}):\n{p.stderr[-3000:]}")
    res = json.loads(p.stdout.strip().splitlines()[-1])
    res.update(variant=variant, wall_s=round(wall, 1), load_before=round(load0, 2))
    return res


def run(args) -> int:
    from fastai_env import check_fastai_python

    check_fastai_python(args.fastai_python)
    work = Path(args.work)
    info = prepare(work, args.n_train, args.seed)
    print(f"prepared: {info}", flush=True)
    p = subprocess.run([args.fastai_python, str(Path(__file__).resolve()), "worker", "--lib", "fastai", "--check",
                        "--work", str(work), "--out", str(work)], capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"fastai check failed:\n{p.stderr[-3000:]}")
    diff = json.loads(p.stdout.strip().splitlines()[-1])["max_abs_diff"]
    print(f"the converted weights in fastai: largest logit difference from ulmfit's {diff:.2e}", flush=True)
    if diff > 1e-3:
        raise RuntimeError("fastai does not reproduce the pretrained model's logits: the conversion is wrong")
    commit, cpu = _git_commit(), _cpu_model()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    for rep in range(args.reps):
        order = list(args.variants) if rep % 2 == 0 else list(reversed(args.variants))
        for v in order:
            res = spawn(v, work, args.fastai_python, args.timeout)
            row = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "commit": commit, "cpu": cpu,
                   "fastai_logit_diff": diff, "rep": rep, "n_train": info["n_train"], "n_test": info["n_test"], **res}
            with open(RESULTS, "a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)
    return report(args)


def report(args) -> int:
    rows = [json.loads(line) for line in open(RESULTS)] if RESULTS.exists() else []
    if args.commit:
        rows = [r for r in rows if r["commit"] == args.commit]
    if not rows:
        print("no rows")
        return 1
    by = {v: [r for r in rows if r["variant"] == v] for v in VARIANTS}
    med = lambda v, k: statistics.median(r[k] for r in by[v]) if by[v] else float("nan")  # noqa: E731
    print(f"machine: {rows[-1]['cpu']}; commits {sorted({r['commit'] for r in rows})}; "
          f"{rows[-1]['n_train']:,} training / {rows[-1]['n_test']:,} test texts\n")
    shown = [v for v in VARIANTS if by[v]]
    vs = [v for v in shown if v != "ulmfit" and by["ulmfit"]]
    print("| | " + " | ".join(f"{v} (n={len(by[v])})" for v in shown) + "".join(f" | {v} / ulmfit" for v in vs)
          + " |")
    print("|---|" + "---:|" * (len(shown) + len(vs)))
    for k, name in [("lm_s", "LM fine-tuning, 1 frozen + 1 epoch (s)"), ("clf_s", "classifier, 5 epochs (s)"),
                    ("predict_s", "prediction on the test texts (s)"), ("wall_s", "whole process (s)"),
                    ("peak_rss_mb", "peak memory (MB)"), ("lm_perplexity", "LM validation perplexity"),
                    ("vocab", "vocabulary"), ("accuracy", "test accuracy")]:
        cells = [f"{med(v, k):,.1f}" if k != "accuracy" else f"{100 * med(v, k):.2f}%" for v in shown]
        ratios = [f"{med(v, k) / med('ulmfit', k):.2f}x" if k.endswith("_s") else "" for v in vs]
        print(f"| {name} | " + " | ".join(cells + ratios) + " |")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--fastai-python", default="/tmp/fastai-venv/bin/python")
    # the library's cache by its rules (~ expanded, empty is unset); this file also runs under fastai's
    # Python, which has no ulmfit to import
    xdg = os.path.expanduser(os.environ.get("XDG_CACHE_HOME", "").strip())
    cache = Path(os.environ.get("ULMFIT_CACHE", "").strip()
                 or (os.path.join(xdg, "ulmfit") if os.path.isabs(xdg) else "~/.cache/ulmfit")).expanduser()
    r.add_argument("--work", default=str(cache / "bench" / "fastai-compare"),
                   help="where the models and runs go (default: the library's cache, $ULMFIT_CACHE or "
                        "~/.cache/ulmfit, under bench/fastai-compare)")
    r.add_argument("--n-train", type=int, default=3000)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--reps", type=int, default=3)
    r.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    r.add_argument("--timeout", type=float, default=3600)
    r.add_argument("--commit", default=None)
    rp = sub.add_parser("report")
    rp.add_argument("--commit", default=None)
    w = sub.add_parser("worker")
    w.add_argument("--lib", choices=("ulmfit", "fastai"), required=True)
    w.add_argument("--work", required=True)
    w.add_argument("--out", required=True)
    w.add_argument("--check", action="store_true", help="only check the converted weights (fastai)")
    w.add_argument("--same-vocab", action="store_true", help="fastai with ulmfit's fine-tuning vocabulary")
    args = ap.parse_args(argv)
    if args.cmd == "worker" and args.check:
        print(json.dumps(check_fastai(Path(args.work))), flush=True)
        return 0
    if args.cmd == "worker":
        if args.lib == "ulmfit":
            res = worker_ulmfit(Path(args.work), Path(args.out))
        else:
            res = worker_fastai(Path(args.work), Path(args.out), same_vocab=args.same_vocab)
        res["peak_rss_mb"] = _peak_rss_mb()
        print(json.dumps(res), flush=True)
        return 0
    return run(args) if args.cmd == "run" else report(args)


if __name__ == "__main__":
    sys.exit(main())
