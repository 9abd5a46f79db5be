"""Re-ranking a ranked candidate list: near-duplicates out, channel caps, diversity.

Every step here is greedy along the list, so the first n results never depend on how many
more were asked for: dropping a near-duplicate or a video over its channel's cap looks only at
better-ranked results, and maximal marginal relevance (MMR) over a fixed pool picks the same
first n whatever the page size. That is what makes pages of one list agree with one request
for all of them.

- **Near-duplicates** (on by default): a candidate with the content hash of a query video or
  of a better-ranked result, or whose embedding is within ``duplicate_similarity`` (cosine) of
  one, is dropped and counted.
- **Channel cap** (``max_per_channel``): a candidate whose channel already has that many
  results is dropped and counted; videos without a channel are never capped.
- **Diversity** (``0..1``, 0 = pure similarity): each next result maximises
  ``(1 - diversity) * relevance - diversity * max(similarity to the results chosen)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from serving.plan import Rerank


@dataclass(frozen=True)
class Reranked:
    """The final list as indices into the candidates, best first, and what was dropped."""

    order: np.ndarray  # int64
    duplicates: int
    capped: int
    more: bool  # candidates remain that could follow the list


@dataclass(frozen=True)
class Candidates:
    """What re-ranking needs of a ranked candidate list (best first)."""

    relevance: np.ndarray  # float64, the ranking score
    content_keys: np.ndarray  # int64 content-hash fingerprints, 0 = unknown
    channels: np.ndarray  # int32 channel codes, -1 = none
    vectors: np.ndarray  # (n, d) float32 unit embeddings
    anchors: np.ndarray  # (m, d) the query videos' embeddings (near-duplicates of the query)
    anchor_keys: frozenset[int]  # the query videos' content keys


def rerank(candidates: Candidates, options: Rerank, want: int) -> Reranked:
    """The first ``want`` results of the re-ranked list (fewer when candidates run out)."""
    n = int(candidates.relevance.shape[0])
    keep, duplicates, examined = (
        _without_duplicates(candidates, options.duplicate_similarity, want, options)
        if options.dedup
        else (np.arange(n), 0, n)
    )
    if options.diversity > 0:
        order, capped, left = _mmr(candidates, keep, options, want)
        return Reranked(order, duplicates, capped, left)
    order, capped, used = _capped(candidates.channels, keep, options.max_per_channel, want)
    more = used < keep.shape[0] or examined < n
    return Reranked(order, duplicates, capped, more)


def _without_duplicates(
    candidates: Candidates, threshold: float, want: int, options: Rerank
) -> tuple[np.ndarray, int, int]:
    """(indices kept, how many were dropped, how many candidates were looked at). Without a
    re-ranking that needs the whole pool, it stops once ``want`` are kept."""
    n = int(candidates.relevance.shape[0])
    whole_pool = options.diversity > 0 or options.max_per_channel is not None
    vectors = candidates.vectors
    anchors = candidates.anchors
    near_query = (
        ((vectors @ anchors.T).max(axis=1) >= threshold).tolist()
        if anchors.shape[0] and n
        else [False] * n
    )
    # pairs (later, earlier) of candidates within the threshold: few, so a dict of lists
    gram = vectors @ vectors.T
    np.fill_diagonal(gram, -np.inf)
    close: dict[int, list[int]] = {}
    hits = gram >= threshold
    if hits.any():
        for i, j in zip(*(axis.tolist() for axis in np.nonzero(hits)), strict=True):
            if j < i:
                close.setdefault(i, []).append(j)
    seen_hashes = set(candidates.anchor_keys)
    seen_hashes.discard(0)
    content_keys = candidates.content_keys.tolist()
    kept: list[int] = []
    kept_set: set[int] = set()
    dropped = 0
    examined = 0
    for i in range(n):
        if not whole_pool and len(kept) >= want:
            break
        examined += 1
        content = content_keys[i]
        if (
            near_query[i]
            or (content != 0 and content in seen_hashes)
            or any(j in kept_set for j in close.get(i, ()))
        ):
            dropped += 1
            continue
        if content != 0:
            seen_hashes.add(content)
        kept.append(i)
        kept_set.add(i)
    return np.array(kept, dtype=np.int64), dropped, examined


def _capped(
    channels: np.ndarray, keep: np.ndarray, cap: int | None, want: int
) -> tuple[np.ndarray, int, int]:
    """(the first ``want`` of ``keep`` with at most ``cap`` per channel, how many were
    dropped, how many of ``keep`` were looked at)."""
    if cap is None:
        order = keep[:want]
        return order, 0, int(order.shape[0])
    counts: dict[int, int] = {}
    out: list[int] = []
    capped = 0
    used = 0
    for i in keep.tolist():
        if len(out) >= want:
            break
        used += 1
        channel = int(channels[i])
        if channel >= 0:
            if counts.get(channel, 0) >= cap:
                capped += 1
                continue
            counts[channel] = counts.get(channel, 0) + 1
        out.append(i)
    return np.array(out, dtype=np.int64), capped, used


def maximal_marginal_relevance(
    relevance: np.ndarray, vectors: np.ndarray, diversity: float, count: int
) -> np.ndarray:
    """Indices of ``count`` picks by MMR (no caps): at ``diversity`` 0, the relevance order
    (ties: the earlier index), so a list ranked by relevance comes back unchanged."""
    chosen, _, _ = _mmr_picks(relevance, vectors, diversity, count, None, None)
    return chosen


def _mmr(
    candidates: Candidates, keep: np.ndarray, options: Rerank, want: int
) -> tuple[np.ndarray, int, bool]:
    relevance = candidates.relevance[keep]
    picks, capped, left = _mmr_picks(
        relevance,
        candidates.vectors[keep],
        options.diversity,
        want,
        candidates.channels[keep],
        options.max_per_channel,
    )
    return keep[picks], capped, left


def _mmr_picks(
    relevance: np.ndarray,
    vectors: np.ndarray,
    diversity: float,
    count: int,
    channels: np.ndarray | None,
    cap: int | None,
) -> tuple[np.ndarray, int, bool]:
    """(picks, how many the channel cap dropped, whether candidates are left)."""
    n = int(relevance.shape[0])
    available = np.ones(n, dtype=bool)
    closest = np.zeros(n)  # similarity to the closest pick so far (0 before the first)
    gain = (1.0 - diversity) * relevance.astype(np.float64)
    counts: dict[int, int] = {}
    picks: list[int] = []
    capped = 0
    while len(picks) < count and available.any():
        score = np.where(available, gain - diversity * closest, -np.inf)
        best = int(np.argmax(score))
        available[best] = False
        if cap is not None and channels is not None:
            channel = int(channels[best])
            if channel >= 0 and counts.get(channel, 0) >= cap:
                capped += 1
                continue
            if channel >= 0:
                counts[channel] = counts.get(channel, 0) + 1
        picks.append(best)
        similarity = vectors @ vectors[best]
        closest = similarity if len(picks) == 1 else np.maximum(closest, similarity)
    return np.array(picks, dtype=np.int64), capped, bool(available.any())


__all__ = ["Candidates", "Reranked", "maximal_marginal_relevance", "rerank"]
