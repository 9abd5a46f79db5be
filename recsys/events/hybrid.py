"""Co-watch neighbour lists and the hybrid blend of collaborative and content neighbours.

:class:`NeighbourLists` is the co-watch graph in the shape serving needs: for every video key,
its partners sorted by weight (strongest first), at most ``top_n``, in three flat arrays (CSR:
``keys``, ``offsets``, ``partners``/``weights``), so a lookup is one binary search and a slice,
never a query. An index build publishes them next to the index file (``cowatch.npz``, same
version directory, same pointer), so a served snapshot never mixes graph and index versions.

:func:`blend` ranks the union of a video's collaborative partners and its content neighbours by

    score(x) = (1 - beta) * s(x) + beta * c(x) * s_max,
    beta = max_share * d / (d + prior)

with ``s(x)`` the content similarity (cosine, negatives as 0), ``s_max`` the best content
similarity among the candidates, ``c(x)`` the co-watch weight of x relative to the video's
strongest partner (0 when not a partner) and ``d`` the video's evidence: its number of co-watch
partners. Why this shape: ``c * s_max`` puts a partner on the content scale (the strongest
partner counts as much as the best content neighbour), and the co-watch share grows with the
evidence but never past ``max_share`` (:class:`BlendSettings`), so a partner that does not look
alike cannot push strong content neighbours out of the list on a handful of co-watches, while
partners that do look alike are lifted among them. A cold video (no partners) gets content
only. The API and the time-split evaluation call the same function.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recsys.choices import SimilarSource

#: Partners kept per video in the published lists.
DEFAULT_TOP_N = 100


@dataclass(frozen=True)
class BlendSettings:
    """How much of a hybrid list co-watch decides (the module docstring has the formula).

    Chosen on two measurements that pull apart: the demo home's category agreement of the top
    10 (its co-watch links other topics too, from about 10 partners a video, and must not
    outweigh content) and the time split's recall of future co-watch on warm videos
    (``bench/timesplit.py``, about 50 partners a video: hybrid above content, learned and
    item-item). A smaller ``prior`` or a larger ``max_share`` trusts co-watch sooner: more
    future co-watch, less agreement with content. ``max_share`` 0 serves content only."""

    #: Partners at which the co-watch share is half of ``max_share``; with the events ingest's
    #: 50 partners a video (its ``top_n``) co-watch and content weigh the same.
    prior: float = 30.0
    #: The co-watch share of a video with unbounded evidence (1: co-watch alone at the limit).
    max_share: float = 0.8

    def __post_init__(self) -> None:
        if not (math.isfinite(self.prior) and self.prior >= 0):
            raise ValueError(f"blend prior must be a finite number >= 0, got {self.prior}")
        if not 0.0 <= self.max_share <= 1.0:
            raise ValueError(f"blend max_share must lie in [0, 1], got {self.max_share}")


#: The blend the API serves and the time split evaluates unless told otherwise.
DEFAULT_BLEND = BlendSettings()


@dataclass(frozen=True)
class NeighbourLists:
    """Co-watch partners per video key (see the module docstring); immutable once built."""

    keys: np.ndarray  # int64, sorted: the videos that have partners
    offsets: np.ndarray  # int64, len(keys) + 1
    partners: np.ndarray  # int64
    weights: np.ndarray  # float32, descending within each video's slice

    @classmethod
    def empty(cls) -> NeighbourLists:
        zeros = np.zeros(0, np.int64)
        return cls(zeros, np.zeros(1, np.int64), zeros, np.zeros(0, np.float32))

    @classmethod
    def from_pairs(
        cls,
        video_a: Sequence[int] | np.ndarray,
        video_b: Sequence[int] | np.ndarray,
        weight: Sequence[float] | np.ndarray,
        top_n: int = DEFAULT_TOP_N,
    ) -> NeighbourLists:
        """Lists from undirected weighted pairs (both directions; repeated pairs: the largest
        weight; ties by partner key), each cut to ``top_n``."""
        a = np.asarray(video_a, np.int64)
        b = np.asarray(video_b, np.int64)
        w = np.asarray(weight, np.float64)
        keep = (a != b) & np.isfinite(w) & (w > 0)
        low, high, w = np.minimum(a, b)[keep], np.maximum(a, b)[keep], w[keep]
        if not low.size:
            return cls.empty()
        # One row per undirected pair (its largest weight), then both directions.
        span = int(high.max()) + 1
        key = low * span + high  # video keys are below 3e9 (int64 fits span**2)
        order = np.argsort(key, kind="stable")
        key = key[order]
        first = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
        w = np.maximum.reduceat(w[order], first)
        low, high = np.divmod(key[first], span)
        owner = np.concatenate([low, high])
        partner = np.concatenate([high, low])
        weights = np.concatenate([w, w])
        # Order by owner, then weight descending, then partner, with integer sorts only: the
        # entries by partner, a stable rank by weight (so equal weights keep partner order),
        # then one sort of owner * entries + rank.
        by_partner = np.argsort(partner, kind="stable")
        rank = np.empty(by_partner.size, np.int64)
        rank[by_partner[np.argsort(-weights[by_partner], kind="stable")]] = np.arange(rank.size)
        order = np.argsort(owner * rank.size + rank)
        owner, partner, weights = owner[order], partner[order], weights[order]
        starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
        rank = np.arange(owner.size) - np.repeat(starts, np.diff(np.r_[starts, owner.size]))
        kept = rank < top_n
        owner, partner, weights = owner[kept], partner[kept], weights[kept]
        keys, counts = np.unique(owner, return_counts=True)
        offsets = np.zeros(keys.size + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        return cls(keys, offsets, partner, weights.astype(np.float32))

    @property
    def pairs(self) -> int:
        """Directed entries (each undirected pair counts at both ends it is kept at)."""
        return int(self.partners.size)

    def __len__(self) -> int:
        return int(self.keys.size)

    def of(self, video_key: int) -> tuple[np.ndarray, np.ndarray]:
        """(partners, weights) of one video, strongest first; empty when it has none."""
        position = int(np.searchsorted(self.keys, video_key))
        if position >= self.keys.size or int(self.keys[position]) != int(video_key):
            return self.partners[:0], self.weights[:0]
        lo, hi = int(self.offsets[position]), int(self.offsets[position + 1])
        return self.partners[lo:hi], self.weights[lo:hi]

    def evidence(self, video_key: int) -> int:
        """How many co-watch partners the video has (0: cold)."""
        return int(self.of(video_key)[0].size)

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(
            buffer,
            keys=self.keys,
            offsets=self.offsets,
            partners=self.partners,
            weights=self.weights,
        )
        return buffer.getvalue()

    @classmethod
    def load(cls, path: Path) -> NeighbourLists:
        with np.load(path, allow_pickle=False) as data:
            lists = cls(
                keys=np.asarray(data["keys"], np.int64),
                offsets=np.asarray(data["offsets"], np.int64),
                partners=np.asarray(data["partners"], np.int64),
                weights=np.asarray(data["weights"], np.float32),
            )
        if lists.offsets.size != lists.keys.size + 1 or int(lists.offsets[-1]) != (
            lists.partners.size
        ):
            raise ValueError(f"{path}: co-watch lists are inconsistent (offsets do not match)")
        return lists


@dataclass(frozen=True)
class Blended:
    """The blended ranking: keys best first, their scores and where each came from."""

    keys: np.ndarray
    scores: np.ndarray
    sources: list[str]  # content | collaborative | both
    beta: float  # the collaborative share used

    def score_of_content(self, similarity: float) -> float:
        """The blended score of a candidate that is not a partner, at this content similarity:
        what a content neighbour not given to the blend could reach."""
        return (1.0 - self.beta) * max(float(similarity), 0.0)


def collaborative_share(evidence: int, settings: BlendSettings = DEFAULT_BLEND) -> float:
    """beta = max_share * d / (d + prior): 0 for a cold video, up to ``max_share``."""
    if evidence <= 0:
        return 0.0
    d = float(evidence)
    return settings.max_share * d / (d + settings.prior)


def blend(
    content_keys: np.ndarray,
    content_scores: np.ndarray,
    partner_keys: np.ndarray,
    partner_weights: np.ndarray,
    k: int,
    *,
    evidence: int | None = None,
    settings: BlendSettings = DEFAULT_BLEND,
) -> Blended:
    """The ``k`` best of both lists by the blended score (see the module docstring).

    ``content_*`` are the candidates with their content similarity (a partner missing there
    counts as similarity 0; ``s_max`` is their best), ``partner_*`` the collaborative
    candidates (already filtered), ``evidence`` the video's partner count in the graph
    (default: the candidates given)."""
    content_keys = np.asarray(content_keys, np.int64)
    partner_keys = np.asarray(partner_keys, np.int64)
    d = int(partner_keys.size if evidence is None else evidence)
    beta = collaborative_share(d, settings)
    c = np.asarray(partner_weights, np.float64)
    if c.size:
        c = c / max(float(c.max()), 1e-12)
    s = np.maximum(np.asarray(content_scores, np.float64), 0.0)
    reference = float(s.max()) if s.size else 0.0
    keys = np.concatenate([partner_keys, content_keys])
    if not keys.size:
        return Blended(keys, np.zeros(0, np.float32), [], beta)
    # Each list holds a key at most once: plain assignments place both sides on the union.
    unique, inverse = np.unique(keys, return_inverse=True)
    c_sum = np.zeros(unique.size)
    s_sum = np.zeros(unique.size)
    from_c = np.zeros(unique.size, bool)
    from_s = np.zeros(unique.size, bool)
    split = partner_keys.size
    c_sum[inverse[:split]] = c
    from_c[inverse[:split]] = True
    s_sum[inverse[split:]] = s
    from_s[inverse[split:]] = True
    score = (1.0 - beta) * s_sum + beta * reference * c_sum
    # Best first; ties: the collaborative evidence, then the content score, then the key.
    order = np.lexsort((unique, -s_sum, -c_sum, -score))[:k]
    names = {
        (True, False): str(SimilarSource.COLLABORATIVE),
        (False, True): str(SimilarSource.CONTENT),
        (True, True): "both",
    }
    sources = [names[(bool(from_c[i]), bool(from_s[i]))] for i in order]
    return Blended(unique[order], score[order].astype(np.float32), sources, beta)
