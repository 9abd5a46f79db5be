"""``recsys eval --report DIR``: an HTML page with plots a person can look at.

Written with matplotlib (Agg backend, PNG files beside ``index.html``):

- ``precision_at_k.png``: precision@k (k = 1..10) of the model, the content baseline and random;
- ``category_precision.png``: precision@5 per category, model next to the content baseline;
- ``training.png``: the model's training run, training loss and validation mAP per epoch
  (epoch -1 is the untrained model, the floor early stopping keeps);
- ``neighbours.png``: for a handful of queries (cold ones first), the query's thumbnail, marked
  cold or warm, and its top-5 neighbours with their scores and categories (green: same category
  as the query, red: not).

The page's table puts the cold queries first: their figures are what a new upload gets.
Category names and titles come from the catalog, so every label is drawn as plain text (no
mathtext, no TeX). The files are written into a fresh temporary folder and renamed into place,
index.html last: a report that fails leaves the previous one whole, and a symlink already in the
folder is replaced, never written through.
"""

from __future__ import annotations

import html
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from training.evaluation import random_metrics, ranking, relevance_from_labels

KS = tuple(range(1, 11))
QUERIES_SHOWN = 6
NEIGHBOURS_SHOWN = 5
#: The report's query groups in the order shown: cold (never trained on), warm, then all.
SECTIONS = ("cold", "warm", "all")


@dataclass
class ReportInputs:
    model: np.ndarray  # (n, d) model embeddings of the clips
    baseline: np.ndarray  # (n, d') content-baseline vectors of the same clips
    categories: list[str]  # the relevance label of each clip
    names: list[str]  # what to call each clip
    images: list[np.ndarray | None] = field(default_factory=list)  # thumbnails (RGB)
    history: list[dict[str, float]] = field(default_factory=list)  # the training run's epochs
    summary: dict[str, Any] = field(default_factory=dict)  # the evaluation JSON
    # per clip: whether the model's training used its pairs or label (None: not known)
    warm: np.ndarray | None = None


def _hits(vectors: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(n, n-1) bool: whether each ranked neighbour shares the query's label."""
    order = ranking(vectors)
    return labels[order] == labels[:, None]


def _queries(labels: np.ndarray) -> np.ndarray:
    relevant = relevance_from_labels(labels, min_relevant=2)
    return np.array([r is not None for r in relevant], dtype=bool)


def precision_curves(inputs: ReportInputs) -> dict[str, list[float]]:
    """precision@k for k in 1..10 of the model, the content baseline and random."""
    labels = np.unique(np.asarray(inputs.categories), return_inverse=True)[1]
    queries = _queries(labels)
    n = labels.shape[0]
    ks = [k for k in KS if k <= n - 1]
    out: dict[str, list[float]] = {}
    for name, vectors in (("model", inputs.model), ("content baseline", inputs.baseline)):
        cum = np.cumsum(_hits(vectors, labels)[queries], axis=1)
        out[name] = [float((cum[:, k - 1] / k).mean()) for k in ks]
    chance = random_metrics(n, relevance_from_labels(labels, 2), ks)
    out["random"] = [chance[f"precision@{k}"] for k in ks]
    return out


def category_precision(inputs: ReportInputs, k: int = 5) -> dict[str, dict[str, float]]:
    """Mean precision@k of each category's queries, for the model and the content baseline."""
    names = np.asarray(inputs.categories)
    labels = np.unique(names, return_inverse=True)[1]
    queries = _queries(labels)
    k = min(k, labels.shape[0] - 1)
    per = {
        who: _hits(vectors, labels)[:, :k].mean(axis=1)
        for who, vectors in (("model", inputs.model), ("content baseline", inputs.baseline))
    }
    return {
        category: {who: float(p[(names == category) & queries].mean()) for who, p in per.items()}
        for category in sorted(set(names[queries]))
    }


def write_report(out_dir: Path, inputs: ReportInputs) -> Path:
    """Write ``index.html`` and its PNGs into ``out_dir``; returns the HTML path."""
    import matplotlib

    matplotlib.use("Agg")
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".report-", dir=out_dir))
    try:
        # Catalog text is data: never parsed as mathtext nor handed to TeX.
        with matplotlib.rc_context({"text.parse_math": False, "text.usetex": False}):
            names = _write_files(staging, inputs)
        for name in names:  # index.html is last: it appears only once its images are there
            os.replace(staging / name, out_dir / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir / "index.html"


def _write_files(out_dir: Path, inputs: ReportInputs) -> list[str]:
    """The report's files written into ``out_dir``; their names, the page last."""
    import matplotlib.pyplot as plt

    figures: list[tuple[str, str]] = []

    curves = precision_curves(inputs)
    fig, ax = plt.subplots(figsize=(6, 4))
    styles = {"model": "o-", "content baseline": "s--", "random": "^:"}  # overlaps stay visible
    for name, values in curves.items():
        ax.plot(range(1, len(values) + 1), values, styles[name], label=name)
    ax.set(xlabel="k", ylabel="precision@k", title="precision@k (same category = relevant)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    figures.append(_save(fig, out_dir / "precision_at_k.png", "precision@k"))

    per_category = category_precision(inputs)
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(per_category) + 2), 4))
    x = np.arange(len(per_category))
    for offset, who in ((-0.2, "model"), (0.2, "content baseline")):
        ax.bar(x + offset, [v[who] for v in per_category.values()], 0.4, label=who)
    ax.set_xticks(x, list(per_category), rotation=30, ha="right")
    ax.set(ylabel="precision@5", title="precision@5 per category", ylim=(0, 1))
    ax.legend()
    figures.append(_save(fig, out_dir / "category_precision.png", "precision@5 per category"))

    if inputs.history:
        figures.append(_training_plot(plt, inputs.history, out_dir / "training.png"))
    figures.append(_neighbours_plot(plt, inputs, out_dir / "neighbours.png"))
    (out_dir / "index.html").write_text(_html(inputs.summary, figures))
    return [name for name, _ in figures] + ["index.html"]


def _save(fig: Any, path: Path, title: str) -> tuple[str, str]:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    fig.clf()
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path.name, title


def _training_plot(plt: Any, history: list[dict[str, float]], path: Path) -> tuple[str, str]:
    fig, ax = plt.subplots(figsize=(6, 4))
    trained = [h for h in history if "train_loss" in h]
    ax.plot([h["epoch"] for h in trained], [h["train_loss"] for h in trained], "o-", label="loss")
    ax.set(xlabel="epoch (-1: untrained)", ylabel="training loss", title="training run")
    validated = [h for h in history if "val_map" in h]
    if validated:
        other = ax.twinx()
        epochs = [h["epoch"] for h in validated]
        other.plot(epochs, [h["val_map"] for h in validated], "s-", color="C1", label="val mAP")
        other.set_ylabel("validation mAP")
        other.legend(loc="upper right")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    return _save(fig, path, "training loss and validation mAP per epoch")


def _neighbours_plot(plt: Any, inputs: ReportInputs, path: Path) -> tuple[str, str]:
    """A row per query: its thumbnail, then its top-5 neighbours by the model."""
    names = np.asarray(inputs.categories)
    labels = np.unique(names, return_inverse=True)[1]
    queries = np.flatnonzero(_queries(labels))
    warm = np.zeros(len(names), bool) if inputs.warm is None else np.asarray(inputs.warm, bool)
    # one query from each of the largest categories, so the rows differ; cold queries first
    chosen: list[int] = []
    for label in np.argsort(-np.bincount(labels[queries])):
        members = queries[labels[queries] == label]
        if members.shape[0]:
            chosen.append(int(members[np.argsort(warm[members], kind="stable")][0]))
        if len(chosen) == QUERIES_SHOWN:
            break
    chosen.sort(key=lambda q: bool(warm[q]))
    order = ranking(inputs.model)
    scores = inputs.model @ inputs.model.T
    cols = NEIGHBOURS_SHOWN + 1
    fig, axes = plt.subplots(
        max(1, len(chosen)), cols, figsize=(2.2 * cols, 2.0 * max(1, len(chosen))), squeeze=False
    )
    for row, q in enumerate(chosen):
        cells = [(q, None)] + [(int(j), float(scores[q, j])) for j in order[q, :NEIGHBOURS_SHOWN]]
        for col, (item, score) in enumerate(cells):
            ax = axes[row][col]
            image = inputs.images[item] if item < len(inputs.images) else None
            if image is not None:
                ax.imshow(image)
            ax.set_xticks([])
            ax.set_yticks([])
            if score is None:
                kind = "" if inputs.warm is None else (" (warm)" if warm[item] else " (cold)")
                ax.set_title(f"query{kind}\n{names[item]}", fontsize=8, fontweight="bold")
            else:
                same = names[item] == names[q]
                ax.set_title(
                    f"{score:.3f}\n{names[item]}", fontsize=8, color="green" if same else "red"
                )
    title = "top-5 neighbours (green: same category"
    if inputs.warm is not None:
        title += "; cold: a query whose pairs and label the training never used"
    return _save(fig, path, title + ")")


def _html(summary: dict[str, Any], figures: list[tuple[str, str]]) -> str:
    rows = []
    for section in SECTIONS:  # cold first: what a new upload gets
        part = summary if section == "all" else summary.get(section, {})
        for who in ("model", "content_baseline", "random"):
            figures_of = part.get(who)
            if figures_of:
                cells = "".join(
                    f"<td>{figures_of.get(k, float('nan')):.3f}</td>"
                    for k in ("precision@1", "precision@5", "map")
                )
                queries = part.get("queries", "")
                rows.append(f"<tr><td>{section}</td><td>{who}</td>{cells}<td>{queries}</td></tr>")
    images = "".join(
        f"<h2>{html.escape(title)}</h2><img src='{name}' alt='{html.escape(title)}'>"
        for name, title in figures
    )
    title = f"evaluation of model {html.escape(str(summary.get('model_version', '')))}"
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px}"
        "img{max-width:100%;border:1px solid #ddd}</style></head><body>"
        f"<h1>{title}</h1><p>{html.escape(str(summary.get('manifest', '')))}: "
        f"{summary.get('clips', '')} clips, {summary.get('warm_clips', 0)} warm</p>"
        "<table><tr><th>queries</th><th>ranking</th><th>P@1</th><th>P@5</th><th>mAP</th>"
        f"<th>n</th></tr>{''.join(rows)}</table>{images}</body></html>"
    )
