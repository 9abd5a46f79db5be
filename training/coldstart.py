"""Cold-start evaluation: are videos nobody has watched yet placed next to the right ones?

A *warm* video is one whose related pairs or label the model's training used; every other video
is *cold*. :func:`cold_warm_sections` scores the queries of each kind apart (each against the
whole gallery), next to the content baseline and random.

:func:`simulate_cowatch` is the real-clip cold-start protocol of ``shared/data/real-av``: clips
have no real co-watch logs, so a seeded, category-stratified half of the clips is warm and gets
simulated co-watch pairs (same-category pairs with weights 1-5 for a popularity skew, plus about a
fifth of noise pairs to random warm clips); the other half gets no pair and no label.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from training.evaluation import random_metrics, retrieval_metrics

KS = (1, 5, 10)


@dataclass(frozen=True)
class SimulatedCowatch:
    warm: np.ndarray  # indices of the warm clips
    pairs: np.ndarray  # (P, 2) indices into the whole set, warm clips only
    weights: np.ndarray  # (P,) co-watch weights


def simulate_cowatch(labels: np.ndarray, seed: int, noise: float = 0.2) -> SimulatedCowatch:
    """The warm half of each category (a category with one clip stays cold) and its pairs."""
    rng = np.random.default_rng([seed, 13])
    labels = np.asarray(labels)
    warm: list[int] = []
    for label in np.unique(labels[labels >= 0]):
        members = rng.permutation(np.flatnonzero(labels == label))
        if members.shape[0] >= 2:
            take = max(1, int(np.floor(members.shape[0] / 2 + rng.random())))
            warm.extend(int(i) for i in members[:take])
    warm_index = np.array(sorted(warm), dtype=np.int64)
    pairs: list[tuple[int, int]] = []
    for label in np.unique(labels[warm_index]):
        members = warm_index[labels[warm_index] == label]
        pairs += [(int(a), int(b)) for i, a in enumerate(members) for b in members[i + 1 :]]
    weights = list(rng.integers(1, 6, len(pairs)).astype(np.float64))  # popularity skew
    noisy = int(round(len(pairs) * noise / (1 - noise))) if pairs else 0
    for _ in range(noisy):  # noise pairs: two random warm clips (usually unrelated)
        a, b = rng.choice(warm_index, 2, replace=False)
        pairs.append((int(a), int(b)))
        weights.append(float(rng.integers(1, 6)))
    return SimulatedCowatch(
        warm_index,
        np.array(pairs, dtype=np.int64).reshape(-1, 2),
        np.array(weights, dtype=np.float64),
    )


def restrict(relevant: Sequence[np.ndarray | None], queries: np.ndarray) -> list:
    """``relevant`` with every query outside ``queries`` (a bool mask) removed."""
    return [r if queries[i] else None for i, r in enumerate(relevant)]


def cold_warm_sections(
    vectors: np.ndarray | None,
    baseline: np.ndarray,
    relevant: Sequence[np.ndarray | None],
    warm: np.ndarray,
    ks: Sequence[int] = KS,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """``cold`` and ``warm`` sections: metrics of the model (``vectors``; None: baselines only),
    the content baseline and random over the cold (``~warm``) and the warm queries."""
    warm = np.asarray(warm, dtype=bool)
    out: dict[str, dict[str, Any]] = {}
    for name, mask in (("cold", ~warm), ("warm", warm)):
        subset = restrict(relevant, mask)
        queries = sum(r is not None and len(r) > 0 for r in subset)
        section: dict[str, Any] = {"queries": queries}
        if queries:
            if vectors is not None:
                section["model"] = retrieval_metrics(vectors, subset, ks)
            section["content_baseline"] = retrieval_metrics(baseline, subset, ks)
            section["random"] = random_metrics(len(baseline), subset, ks, seed=seed)
        out[name] = section
    return out
