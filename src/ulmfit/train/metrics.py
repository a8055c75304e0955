"""Classification metrics, computed with NumPy (accuracy, error, macro-F1, per-class precision and
recall, confusion matrix) so that evaluating needs nothing beyond the core dependencies."""

from __future__ import annotations

import warnings

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """cm[i, j] = number of examples of true class i predicted as class j."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return cm


def classification_report(y_true, y_pred, label_names: list[str]) -> dict:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    k = len(label_names)
    cm = confusion_matrix(y_true, y_pred, k)
    tp = np.diag(cm).astype(float)
    support = cm.sum(1)
    predicted = cm.sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), 0.0)
        recall = np.where(support > 0, tp / np.maximum(support, 1), 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    present = (support > 0) | (predicted > 0)  # a class predicted but absent from the data counts (F1 0)
    acc = float(tp.sum() / max(1, len(y_true)))
    return {
        "n": int(len(y_true)),
        "accuracy": acc,
        "error_rate": 1.0 - acc,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "per_class": {name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                             "support": int(support[i])} for i, name in enumerate(label_names)},
        "confusion_matrix": cm.tolist(),
        "labels": list(label_names),
    }


def multilabel_report(y_true: np.ndarray, probs: np.ndarray, label_names: list[str], threshold: float = 0.5) -> dict:
    y_true = np.asarray(y_true) > 0.5
    pred = np.asarray(probs) >= threshold
    tp = (pred & y_true).sum(0).astype(float)
    fp = (pred & ~y_true).sum(0).astype(float)
    fn = (~pred & y_true).sum(0).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)
        precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 0.0)
        recall = np.where(tp + fn > 0, tp / np.maximum(tp + fn, 1), 0.0)
    micro = 2 * tp.sum() / max(1.0, 2 * tp.sum() + fp.sum() + fn.sum())
    exact = float((pred == y_true).all(1).mean()) if len(y_true) else 0.0
    # macro-F1 over the labels that occur in the data or in the predictions: a label absent from
    # both has no F1 to speak of (the single-label report likewise averages over present classes)
    seen = (tp + fp + fn) > 0
    return {"n": int(len(y_true)), "exact_match": exact, "accuracy": exact, "error_rate": 1 - exact,
            "micro_f1": float(micro), "macro_f1": float(f1[seen].mean()) if seen.any() else 0.0,
            "per_class": {n: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                              "support": int(y_true[:, i].sum())} for i, n in enumerate(label_names)},
            "labels": list(label_names), "threshold": threshold}


def format_confusion(cm, labels: list[str]) -> str:
    """The confusion matrix as aligned text (rows: true class, columns: predicted)."""
    cm = np.asarray(cm)
    w = max(6, max((len(l) for l in labels), default=4) + 1, len(str(cm.max() if cm.size else 0)) + 1)
    head = " " * w + "".join(f"{l[:w - 1]:>{w}}" for l in labels)
    rows = [f"{l[:w - 1]:<{w}}" + "".join(f"{v:>{w}}" for v in r) for l, r in zip(labels, cm)]
    return "\n".join(["true \\ predicted", head, *rows])


def plot_confusion(cm, labels: list[str], path) -> None:
    from matplotlib.figure import Figure  # not pyplot: the caller's backend (a notebook's) stays as it is

    from ..io import atomic_path

    cm = np.asarray(cm)
    n = len(labels)
    fig = Figure(figsize=(1.2 + 0.55 * n, 1.0 + 0.5 * n))
    ax = fig.subplots()
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    # a label is text, not mathtext: "$5-$10" was drawn as maths and "10%+ of $" stopped the plot
    shown = [str(x).replace("$", r"\$") for x in labels]
    ax.set_xticks(range(n), shown, rotation=45, ha="right")
    ax.set_yticks(range(n), shown)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 25:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if norm[i, j] > 0.5 else "black")
    with warnings.catch_warnings():  # a label in a script the font lacks is drawn as boxes; the report's
        # JSON holds it as it is. Each missing glyph was a warning of its own, twenty for one Chinese label
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from", category=UserWarning)
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
