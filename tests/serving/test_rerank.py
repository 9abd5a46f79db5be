"""Re-ranking (near-duplicates, channel caps, diversity) against a plain greedy statement of
the rules, one candidate at a time: the vectorised steps in :mod:`serving.rerank` must choose
the same list and count the same drops on many seeded candidate lists (ties, copies, dominant
channels, every depth)."""

from __future__ import annotations

import numpy as np
import pytest

from serving.plan import Rerank
from serving.rerank import Candidates, maximal_marginal_relevance, rerank


def reference(c: Candidates, options: Rerank, want: int) -> tuple[list[int], int, int, bool]:
    """The rules as written in the module docstring, walked candidate by candidate: (order,
    duplicates, capped, more)."""
    n = int(c.relevance.shape[0])
    gram = c.vectors @ c.vectors.T
    threshold = options.duplicate_similarity
    whole_pool = options.diversity > 0 or options.max_per_channel is not None
    kept: list[int] = []
    seen = {k for k in c.anchor_keys if k != 0}
    dropped = examined = 0
    for i in range(n):
        if not options.dedup:
            kept.append(i)
            examined += 1
            continue
        if not whole_pool and len(kept) >= want:
            break
        examined += 1
        content = int(c.content_keys[i])
        near_query = bool(c.anchors.shape[0]) and float((c.vectors[i] @ c.anchors.T).max()) >= (
            threshold
        )
        if (
            near_query
            or (content != 0 and content in seen)
            or any(gram[i, j] >= threshold for j in kept)
        ):
            dropped += 1
            continue
        if content != 0:
            seen.add(content)
        kept.append(i)
    cap = options.max_per_channel
    counts: dict[int, int] = {}
    capped = 0
    if options.diversity > 0:
        d = options.diversity
        available = list(kept)
        closest = dict.fromkeys(kept, 0.0)
        picks: list[int] = []
        while len(picks) < want and available:
            best = max(available, key=lambda i: ((1 - d) * c.relevance[i] - d * closest[i], -i))
            available.remove(best)
            channel = int(c.channels[best])
            if cap is not None and channel >= 0:
                if counts.get(channel, 0) >= cap:
                    capped += 1
                    continue
                counts[channel] = counts.get(channel, 0) + 1
            for i in kept:
                similarity = float(gram[best, i])
                closest[i] = similarity if not picks else max(closest[i], similarity)
            picks.append(best)
        return picks, dropped, capped, bool(available)
    order: list[int] = []
    used = 0
    for i in kept:
        if len(order) >= want:
            break
        used += 1
        channel = int(c.channels[i])
        if cap is not None and channel >= 0:
            if counts.get(channel, 0) >= cap:
                capped += 1
                continue
            counts[channel] = counts.get(channel, 0) + 1
        order.append(i)
    return order, dropped, capped, used < len(kept) or examined < n


def candidates(seed: int, n: int) -> Candidates:
    """A ranked list with planted copies (same hash or nearly the same embedding), ties and a
    few channels, one of them dominant."""
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, 16)).astype(np.float32)
    copies = rng.choice(n, size=n // 5, replace=False)
    for i in copies:  # a re-encode of an earlier or later candidate
        vectors[i] = vectors[rng.integers(n)] + rng.normal(scale=1e-3, size=16)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    relevance = np.sort(rng.choice([0.9, 0.8, 0.7, 0.6], size=n) + rng.uniform(0, 0.05, n))[::-1]
    content = rng.integers(1, n, size=n).astype(np.int64)
    content[rng.random(n) < 0.2] = 0  # unknown hashes
    channels = np.where(rng.random(n) < 0.5, 0, rng.integers(-1, 6, size=n)).astype(np.int32)
    anchor = vectors[rng.integers(n)].reshape(1, -1)
    return Candidates(
        relevance=relevance.astype(np.float64),
        content_keys=content,
        channels=channels,
        vectors=vectors,
        anchors=anchor if seed % 3 else np.zeros((0, 16), np.float32),
        anchor_keys=frozenset({int(content[0]), 0}) if seed % 2 else frozenset(),
    )


@pytest.mark.parametrize("seed", range(40))
def test_vectorised_reranking_chooses_and_counts_as_the_greedy_rules(seed: int) -> None:
    rng = np.random.default_rng(seed + 1000)
    n = int(rng.integers(0, 120))
    c = candidates(seed, n)
    for options in (
        Rerank(),
        Rerank(dedup=False),
        Rerank(max_per_channel=2),
        Rerank(dedup=False, max_per_channel=1),
        Rerank(diversity=0.5, max_per_channel=2),
        Rerank(diversity=0.3),
        Rerank(diversity=1.0, dedup=False, max_per_channel=3),
        Rerank(duplicate_similarity=0.9, max_per_channel=2),
    ):
        for want in (1, 5, 10, 40, 200):
            got = rerank(c, options, want)
            order, duplicates, capped, more = reference(c, options, want)
            assert (got.order.tolist(), got.duplicates, got.capped, got.more) == (
                order,
                duplicates,
                capped,
                more,
            ), (options, want)


def test_mmr_at_zero_diversity_keeps_the_relevance_order_ties_by_position() -> None:
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(30, 8))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    relevance = np.repeat(np.sort(rng.uniform(size=15))[::-1], 2)
    assert maximal_marginal_relevance(relevance, vectors, 0.0, 30).tolist() == list(range(30))
