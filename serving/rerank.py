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

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from serving.plan import Rerank

#: Lists up to this long reuse their mask of earlier candidates (a page, a re-rank pool).
KEPT_MASKS = 256
#: The channel codes passed to the MMR loop when no cap applies.
NO_CHANNELS = np.zeros(0, dtype=np.int32)


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
    pooled = options.diversity > 0
    # one similarity matrix for both steps (a 100-candidate pool: one small matrix product)
    gram = similarities(candidates.vectors) if options.dedup or pooled else None
    if options.dedup:
        assert gram is not None
        whole_pool = pooled or options.max_per_channel is not None
        keep, duplicates, examined = _without_duplicates(
            candidates, gram, options.duplicate_similarity, None if whole_pool else want
        )
    else:
        keep, duplicates, examined = np.arange(n), 0, n
    if pooled:
        assert gram is not None
        among = gram if keep.shape[0] == n else gram[np.ix_(keep, keep)]
        picks, capped, left = _mmr_picks(
            candidates.relevance[keep],
            among,
            options.diversity,
            want,
            candidates.channels[keep],
            options.max_per_channel,
        )
        return Reranked(keep[picks], duplicates, capped, left)
    order, capped, used = _capped(candidates.channels, keep, options.max_per_channel, want)
    more = used < keep.shape[0] or examined < n
    return Reranked(order, duplicates, capped, more)


def similarities(vectors: np.ndarray) -> np.ndarray:
    """Cosine similarities of every pair of (unit) candidate vectors."""
    return vectors @ vectors.T


def _without_duplicates(
    candidates: Candidates, gram: np.ndarray, threshold: float, want: int | None
) -> tuple[np.ndarray, int, int]:
    """(indices kept, how many were dropped, how many candidates were looked at). With
    ``want`` (no re-ranking that needs the whole pool) it stops once ``want`` are kept.

    A candidate is dropped when it is near a query video (or has its content hash), or when a
    *kept* better-ranked candidate is within ``threshold`` or has its content hash. The usual
    list, with nothing to drop among the candidates it returns, is settled by a few whole-list
    checks; otherwise only the few candidates with such an earlier neighbour need a decision
    in order, and the rest are kept at once."""
    n = int(gram.shape[0])
    content = candidates.content_keys
    anchors = candidates.anchors
    near = nearness(candidates.vectors, anchors) if n else None
    limit = n if want is None else min(n, want)
    if nothing_to_drop(
        content[:limit], candidates.anchor_keys, gram[:limit, :limit], near, threshold
    ):
        return np.arange(limit, dtype=np.int64), 0, limit
    dropped = np.zeros(n, dtype=bool) if near is None else near >= threshold
    for key in candidates.anchor_keys:  # a query video or two: cheaper than np.isin
        if key != 0:
            dropped |= content == key
    earlier: dict[int, list[int]] = {}  # candidate -> better-ranked candidates it may copy
    later, sooner = np.nonzero(gram >= threshold)
    for i, j in zip(later.tolist(), sooner.tolist(), strict=True):
        if j < i:
            earlier.setdefault(i, []).append(j)
    if n > 1:
        order = np.argsort(content, kind="stable")  # equal hashes: ascending positions
        ranked = content[order]
        repeated = np.flatnonzero((ranked[1:] == ranked[:-1]) & (ranked[1:] != 0)) + 1
        run: list[int] = []  # the better-ranked candidates with the current hash
        previous = -2
        for at in repeated.tolist():
            if at != previous + 1:
                run = [int(order[at - 1])]
            member = int(order[at])
            earlier.setdefault(member, []).extend(run)
            run.append(member)
            previous = at
    kept = ~dropped
    for i in sorted(earlier):
        if kept[i] and any(kept[j] for j in earlier[i]):
            kept[i] = False
    chosen = np.flatnonzero(kept)
    if want is not None and chosen.shape[0] >= want:
        chosen = chosen[:want]
        examined = int(chosen[-1]) + 1 if want > 0 else 0
    else:
        examined = n
    return chosen, examined - int(chosen.shape[0]), examined


def nearness(vectors: np.ndarray, anchors: np.ndarray) -> np.ndarray | None:
    """Each vector's similarity to its closest anchor (None without anchors); one anchor, the
    usual query video, in one matrix-vector product."""
    if anchors.shape[0] == 1:
        return vectors @ anchors[0]
    return (vectors @ anchors.T).max(axis=1) if anchors.shape[0] else None


def _earlier(n: int) -> np.ndarray:
    """[i, j] true where candidate j is ranked before candidate i (the pairs to check); kept
    for page- and pool-sized lists, which are most of the calls."""
    return _earlier_kept(n) if n <= KEPT_MASKS else np.tri(n, n, -1, dtype=bool)


@functools.cache
def _earlier_kept(n: int) -> np.ndarray:
    return np.tri(n, n, -1, dtype=bool)


def nothing_to_drop(
    content_keys: np.ndarray,
    anchor_keys: frozenset[int],
    gram: np.ndarray,
    near: np.ndarray | None,
    threshold: float,
) -> bool:
    """Whether none of a list's first candidates (``gram``: their similarities; ``near``:
    their similarity to the query, at least as many) is a near-duplicate of the query or of an
    earlier one among them, nor shares a content hash (``content_keys``, 0 = unknown) with the
    query (``anchor_keys``) or another of them: then they are the list as they are."""
    limit = int(gram.shape[0])
    if (gram >= threshold)[_earlier(limit)].any():
        return False
    if near is not None and (near[:limit] >= threshold).any():
        return False
    known = [key for key in content_keys.tolist() if key != 0]
    return len(set(known)) == len(known) and anchor_keys.isdisjoint(known)


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
    for i, channel in zip(keep.tolist(), channels[keep].tolist(), strict=True):
        if len(out) >= want:
            break
        used += 1
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
    chosen, _, _ = _mmr_picks(relevance, similarities(vectors), diversity, count, None, None)
    return chosen


def _mmr_picks(
    relevance: np.ndarray,
    similarity: np.ndarray,
    diversity: float,
    count: int,
    channels: np.ndarray | None,
    cap: int | None,
) -> tuple[np.ndarray, int, bool]:
    """(picks, how many the channel cap dropped, whether candidates are left), from the
    candidates' pairwise ``similarity``: :func:`_mmr_loop`, compiled."""
    capping = cap is not None and channels is not None
    picks, capped, left = _compiled_mmr()(
        np.ascontiguousarray(relevance, dtype=np.float64),
        np.ascontiguousarray(similarity),
        float(diversity),
        int(count),
        np.ascontiguousarray(channels) if capping else NO_CHANNELS,
        int(cap) if capping and cap is not None else -1,
    )
    return picks, int(capped), bool(left)


def prepare() -> None:
    """Compile the MMR loop (or read it from numba's cache) now, at a worker's start, rather
    than in the first diversity request."""
    one = np.ones((1, 1), dtype=np.float32)
    _mmr_picks(np.ones(1), one, 0.5, 1, np.zeros(1, dtype=NO_CHANNELS.dtype), 1)


@functools.cache
def _compiled_mmr() -> Any:
    """:func:`_mmr_loop` compiled by numba (installed with librosa) on first use, in the thread
    a diversity request runs in (about a second; then from numba's cache on disk). The loop in
    numpy took one array operation per step of each round: about a fifth of a diversity
    request."""
    import numba

    return numba.njit(cache=True, nogil=True)(_mmr_loop)


def _mmr_loop(
    relevance: np.ndarray,
    similarity: np.ndarray,
    diversity: float,
    count: int,
    channels: np.ndarray,
    cap: int,
) -> tuple[np.ndarray, int, bool]:
    """MMR picks with a channel cap (``cap`` -1: none), written for numba.

    One round per pick, not per candidate looked at: the candidates of a channel at its cap
    leave the choice at once; those that would have been chosen before this round's pick (a
    higher score, or an equal one earlier in the list) are the ones counted as capped, as
    if they had been taken one by one and refused."""
    n = relevance.shape[0]
    gain = (1.0 - diversity) * relevance
    closest = np.zeros(n)  # similarity to the closest pick so far (0 before the first)
    blocked = np.zeros(n, dtype=np.bool_)  # picked, refused, or of a channel at its cap
    refusable = np.zeros(n, dtype=np.bool_)  # not picked, of a channel at its cap
    picks = np.empty(count, dtype=np.int64)
    picked = 0
    capped = 0
    refusing = False  # whether any candidate is refusable (skips the check until one is)
    while picked < count:
        best = -1
        top = -np.inf
        for i in range(n):
            if not blocked[i]:
                score = closest[i] * -diversity + gain[i]
                if best < 0 or score > top:
                    best, top = i, score
        if best < 0:  # nothing left but channels at their cap
            for i in range(n):
                if refusable[i]:
                    capped += 1
                    refusable[i] = False
            break
        if refusing:
            for i in range(n):
                if refusable[i]:
                    score = closest[i] * -diversity + gain[i]
                    if score > top or (score == top and i < best):
                        capped += 1
                        refusable[i] = False
        picks[picked] = best
        picked += 1
        blocked[best] = True
        channel = channels[best] if cap >= 0 else -1
        if channel >= 0:
            taken = 0
            for p in range(picked):
                if channels[picks[p]] == channel:
                    taken += 1
            if taken >= cap:
                for i in range(n):
                    if channels[i] == channel and not blocked[i]:
                        refusable[i] = True
                        blocked[i] = True
                refusing = True
        for i in range(n):
            value = float(similarity[best, i])
            if picked == 1 or value > closest[i]:
                closest[i] = value
    left = False
    for i in range(n):
        if refusable[i] or not blocked[i]:
            left = True
            break
    return picks[:picked], capped, left


__all__ = [
    "Candidates",
    "Reranked",
    "maximal_marginal_relevance",
    "nearness",
    "nothing_to_drop",
    "prepare",
    "rerank",
    "similarities",
]
