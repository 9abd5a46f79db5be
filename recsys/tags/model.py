"""A trained tags model: what it reads, its heads (categories, tags), their calibration.

The model is plain arrays (safetensors) plus JSON, never a pickle: a linear probe is its weights
and biases, a k-nearest-neighbour voter its labelled reference rows. Each head maps its raw
scores (softmax or sigmoid of the probe, or the neighbours' vote share) through one calibration
curve fitted on held-out scores, so a confidence of 0.8 means that about 80 % of such
predictions were right; the head abstains below ``threshold``. Where in a video a tag applies
comes from its segments, each labelled with its video's label (weak supervision): a category
head keeps the labelled videos' segment rows and scores a segment by its nearest ones of each
category (segments of one video are alike, so a class-wise nearest-neighbour score follows a
category across its videos better than one probe over all segments did on real clips); a tags
head keeps a per-segment probe.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recsys.choices import TagKind
from recsys.choices import TagMethod as Method
from recsys.choices import TagSource as Source
from recsys.durable import atomic_write
from recsys.settings import Settings
from recsys.tags.errors import NoTagsModel, TagsError
from recsys.tags.inputs import BlockScaler

#: The pointer file naming the tags model predictions use (under ``tags_dir``).
CURRENT = "CURRENT"
#: Confidence below which a head abstains unless the model or the caller says otherwise.
DEFAULT_THRESHOLD = 0.5
#: Nearest reference segments of each category averaged into a segment's similarity to it.
SEGMENT_K = 8
#: Softmax temperature of those similarities (cosines): a segment's log-probabilities.
SEGMENT_TEMPERATURE = 0.05


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(logits, -50, 50)))


def unit_rows(rows: np.ndarray) -> np.ndarray:
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-9)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return np.asarray(shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True)))


def class_similarity(
    queries: np.ndarray, reference: np.ndarray, classes: np.ndarray, count: int, k: int
) -> np.ndarray:
    """(n, count): mean cosine similarity of each query to its ``k`` most similar reference
    rows of each class (``classes`` (N,): each reference row's class index); a class without
    reference rows gets -1."""
    similarity = unit_rows(queries) @ unit_rows(reference).T
    out = np.full((queries.shape[0], count), -1.0)
    for c in range(count):
        mine = similarity[:, classes == c]
        if mine.shape[1]:
            top = min(k, mine.shape[1])
            out[:, c] = -np.partition(-mine, top - 1, axis=1)[:, :top].mean(axis=1)
    return out


def knn_votes(
    queries: np.ndarray, reference: np.ndarray, memberships: np.ndarray, k: int
) -> np.ndarray:
    """Share of each class among the ``k`` most cosine-similar reference rows of each query."""
    if reference.shape[0] == 0:
        return np.zeros((queries.shape[0], memberships.shape[1]))
    k = min(k, reference.shape[0])
    similarity = unit_rows(queries) @ unit_rows(reference).T
    nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
    return memberships[nearest].mean(axis=1)


@dataclass
class Head:
    """One label space (``kind``) of a tags model; ``arrays`` holds its parameters.

    Probe: ``weights`` (C, D), ``bias`` (C,). kNN: ``reference`` (N, D), ``memberships``
    (N, C) and ``k``. Both: ``calibration`` (2, T), raw scores and the confidence each means.
    Segments: ``segment_reference`` (M, D') labelled segment rows with ``segment_classes``
    (M,) their class indices (categories), or ``segment_weights``/``segment_bias``, the
    per-segment probe (tags, and category heads saved before the reference existed).
    """

    kind: TagKind
    classes: list[str]
    method: Method
    arrays: dict[str, np.ndarray]
    k: int = 0
    c: float = 1.0  # the probe's regularisation strength (sklearn's C)
    threshold: float = DEFAULT_THRESHOLD
    figures: dict[str, Any] = field(default_factory=dict)  # cross-validated choice

    @property
    def single_label(self) -> bool:
        return self.kind == TagKind.CATEGORY

    def _link(self, logits: np.ndarray) -> np.ndarray:
        return softmax(logits) if self.single_label else sigmoid(logits)

    def raw_scores(self, rows: np.ndarray) -> np.ndarray:
        """Uncalibrated (n, C) scores of pooled input rows."""
        if self.method == Method.KNN:
            return knn_votes(rows, self.arrays["reference"], self.arrays["memberships"], self.k)
        return self._link(rows @ self.arrays["weights"].T + self.arrays["bias"])

    def calibrate(self, raw: np.ndarray) -> np.ndarray:
        curve = self.arrays["calibration"]
        return np.interp(raw, curve[0], curve[1])

    def confidences(self, rows: np.ndarray) -> np.ndarray:
        """Calibrated (n, C) confidences of pooled input rows."""
        return self.calibrate(self.raw_scores(rows))

    def segment_scores(self, rows: np.ndarray) -> np.ndarray:
        """(S, C) per-segment probabilities of segment rows."""
        return np.exp(self.segment_log_scores(rows)) if self.single_label else self._probe(rows)

    def segment_log_scores(self, rows: np.ndarray) -> np.ndarray:
        """(S, C) per-segment log-probabilities of segment rows (categories: from the
        reference segments when the head has them)."""
        if "segment_reference" in self.arrays:
            similarity = class_similarity(
                rows,
                self.arrays["segment_reference"],
                np.rint(self.arrays["segment_classes"]).astype(np.int64),
                len(self.classes),
                SEGMENT_K,
            )
            return log_softmax(similarity / SEGMENT_TEMPERATURE)
        return np.log(np.clip(self._probe(rows), 1e-12, 1.0))

    def _probe(self, rows: np.ndarray) -> np.ndarray:
        return self._link(rows @ self.arrays["segment_weights"].T + self.arrays["segment_bias"])


@dataclass
class TagModel:
    """Everything a prediction needs; ``version`` hashes it (see :func:`save_tag_model`)."""

    source: Source
    extractor: str
    extractor_version: str
    model_version: str | None  # the stage-B model whose embeddings it reads (embedding source)
    audio_dim: int
    video_scaler: BlockScaler
    segment_scaler: BlockScaler
    heads: dict[TagKind, Head]
    metrics: dict[str, Any] = field(default_factory=dict)
    version: str = ""

    def meta(self) -> dict[str, Any]:
        return {
            "source": self.source.value,
            "extractor": self.extractor,
            "extractor_version": self.extractor_version,
            "model_version": self.model_version,
            "audio_dim": self.audio_dim,
            "video_blocks": self.video_scaler.sizes,
            "video_block_weights": self.video_scaler.weights,
            "segment_blocks": self.segment_scaler.sizes,
            "segment_block_weights": self.segment_scaler.weights,
            "heads": {
                kind.value: {
                    "classes": head.classes,
                    "method": head.method.value,
                    "k": head.k,
                    "c": head.c,
                    "threshold": head.threshold,
                    "figures": head.figures,
                }
                for kind, head in self.heads.items()
            },
            "metrics": self.metrics,
        }

    def tensors(self) -> dict[str, np.ndarray]:
        out = {
            "video.mean": self.video_scaler.mean,
            "video.std": self.video_scaler.std,
            "segment.mean": self.segment_scaler.mean,
            "segment.std": self.segment_scaler.std,
        }
        for kind, head in self.heads.items():
            out.update({f"{kind.value}.{name}": array for name, array in head.arrays.items()})
        return {name: np.ascontiguousarray(a, dtype=np.float32) for name, a in out.items()}


def tags_dir(settings: Settings) -> Path:
    return settings.resolved_home / "tags"


def save_tag_model(settings: Settings, model: TagModel, *, activate: bool = True) -> str:
    """Write ``model`` under ``tags/<version>/`` (version = hash of its content) and, with
    ``activate``, point ``tags/CURRENT`` at it. Returns the version."""
    from safetensors.numpy import save

    tensors = model.tensors()
    meta = json.dumps(model.meta(), sort_keys=True)
    digest = hashlib.sha256(meta.encode())
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].tobytes())
    model.version = "tags-" + digest.hexdigest()[:12]
    folder = tags_dir(settings) / model.version
    atomic_write(folder / "model.safetensors", save(tensors))
    atomic_write(folder / "model.json", meta.encode())
    if activate:
        atomic_write(tags_dir(settings) / CURRENT, model.version.encode())
    return model.version


def current_tags_version(settings: Settings) -> str | None:
    pointer = tags_dir(settings) / CURRENT
    return pointer.read_text().strip() or None if pointer.is_file() else None


def load_tag_model(settings: Settings, version: str | None = None) -> TagModel:
    """The tags model ``version`` (default: the current one); NoTagsModel when there is none."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    version = version or current_tags_version(settings)
    if version is None:
        raise NoTagsModel(
            f"no tags model in {settings.resolved_home}; train one with `recsys tags train`"
        )
    folder = tags_dir(settings) / version
    try:
        meta = json.loads((folder / "model.json").read_text())
        tensors = load_file(str(folder / "model.safetensors"))
    except FileNotFoundError as error:
        raise NoTagsModel(f"tags model {version} not found under {folder}") from error
    except (OSError, ValueError, SafetensorError) as error:
        raise TagsError(f"tags model files under {folder} are unreadable ({error})") from error
    heads = {}
    for kind_name, head in meta["heads"].items():
        prefix = f"{kind_name}."
        heads[TagKind(kind_name)] = Head(
            kind=TagKind(kind_name),
            classes=list(head["classes"]),
            method=Method(head["method"]),
            arrays={
                name[len(prefix) :]: array.astype(np.float64)
                for name, array in tensors.items()
                if name.startswith(prefix)
            },
            k=int(head["k"]),
            c=float(head.get("c", 1.0)),
            threshold=float(head["threshold"]),
            figures=head.get("figures", {}),
        )
    return TagModel(
        source=Source(meta["source"]),
        extractor=meta["extractor"],
        extractor_version=meta["extractor_version"],
        model_version=meta["model_version"],
        audio_dim=int(meta["audio_dim"]),
        video_scaler=BlockScaler(
            meta["video_blocks"],
            tensors["video.mean"],
            tensors["video.std"],
            list(meta.get("video_block_weights", [])),
        ),
        segment_scaler=BlockScaler(
            meta["segment_blocks"],
            tensors["segment.mean"],
            tensors["segment.std"],
            list(meta.get("segment_block_weights", [])),
        ),
        heads=heads,
        metrics=meta.get("metrics", {}),
        version=version,
    )
