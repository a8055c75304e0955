"""Learning curves from a run's metrics.jsonl (validation perplexity against tokens seen)."""

from __future__ import annotations

import json
from pathlib import Path


def read_metrics(path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                rows.append(json.loads(line))
    return rows


def plot_learning_curve(runs: dict[str, str | Path], png: str | Path, title: str = "validation perplexity") -> Path:
    """One line per run: validation perplexity (log scale) against training tokens."""
    from matplotlib.figure import Figure  # not pyplot: the caller's backend (a notebook's) stays as it is

    from ..io import atomic_path

    fig = Figure(figsize=(6.5, 4))
    ax = fig.subplots()
    for label, path in runs.items():
        rows = [r for r in read_metrics(path) if "valid_perplexity" in r and r.get("tokens")]
        ax.plot([r["tokens"] / 1e6 for r in rows], [r["valid_perplexity"] for r in rows], label=label)
    ax.set_yscale("log")
    ax.set_xlabel("training tokens (millions)")
    ax.set_ylabel("validation perplexity")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    png = Path(png)
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return png
