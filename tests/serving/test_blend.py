"""The hybrid blend weighs co-watch by each video's evidence, on the content similarity scale:
a handful of co-watches never pushes a partner that does not look alike above strong content
neighbours, many do lift partners that look alike, and no setting breaks the prefix order."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.events.hybrid import (
    DEFAULT_BLEND,
    BlendSettings,
    blend,
    collaborative_share,
)

#: Ten content neighbours, similarity 0.95 down to 0.50; key 100 is a partner that does not look
#: alike (0.10), key 5 one that does (0.70, ranked 6th by content alone).
CONTENT = np.arange(10, dtype=np.int64)
SIMILARITY = np.linspace(0.95, 0.50, 10)
UNLIKE, ALIKE = 100, 5


def _ranked(evidence: int, settings: BlendSettings, k: int = 11) -> list[int]:
    keys = np.r_[CONTENT, UNLIKE]
    scores = np.r_[SIMILARITY, 0.10]
    partners = np.array([UNLIKE, ALIKE], np.int64)
    mixed = blend(
        keys, scores, partners, np.array([1.0, 1.0]), k, evidence=evidence, settings=settings
    )
    return [int(key) for key in mixed.keys]


def test_the_cowatch_share_grows_with_evidence_up_to_its_limit() -> None:
    settings = BlendSettings(prior=10.0, max_share=0.5)
    shares = [collaborative_share(d, settings) for d in (0, 1, 10, 100, 10_000)]
    assert shares[0] == 0.0 and shares[2] == pytest.approx(0.25)
    assert all(a < b for a, b in zip(shares, shares[1:], strict=False))
    assert shares[-1] < 0.5 and shares[-1] == pytest.approx(0.5, abs=1e-3)


def test_a_cold_video_is_ranked_by_content_alone() -> None:
    mixed = blend(CONTENT, SIMILARITY, np.zeros(0, np.int64), np.zeros(0), 10)
    assert mixed.beta == 0.0 and mixed.keys.tolist() == CONTENT.tolist()
    assert mixed.scores == pytest.approx(SIMILARITY.astype(np.float32))
    assert set(mixed.sources) == {"content"}


def test_weak_evidence_keeps_an_unlike_partner_behind_strong_content_neighbours() -> None:
    few = _ranked(evidence=2, settings=BlendSettings(prior=10.0, max_share=0.5))
    assert few.index(UNLIKE) > 5  # behind the strong content neighbours
    assert few.index(ALIKE) < 5  # a partner that looks alike is lifted among them
    many = _ranked(evidence=1000, settings=BlendSettings(prior=10.0, max_share=0.95))
    assert many[:2] == [ALIKE, UNLIKE]  # strong evidence and a large share: co-watch leads


def test_a_partner_scores_on_the_content_scale() -> None:
    # weights in any unit (counts, normalised co-watch, PMI): only their ratio to the
    # strongest counts, and a partner never scores above the best content similarity
    keys = np.r_[CONTENT, UNLIKE]
    scores = np.r_[SIMILARITY, 0.10]
    for unit in (1e-3, 1.0, 250.0):
        mixed = blend(
            keys,
            scores,
            np.array([UNLIKE]),
            np.array([unit]),
            11,
            evidence=10**6,
            settings=BlendSettings(prior=0.0, max_share=1.0),
        )
        assert int(mixed.keys[0]) == UNLIKE
        assert float(mixed.scores[0]) == pytest.approx(SIMILARITY.max(), abs=1e-6)


def test_shorter_lists_are_prefixes_of_longer_ones_for_every_setting() -> None:
    rng = np.random.default_rng(7)
    keys = np.arange(200, dtype=np.int64)
    similarity = rng.uniform(-0.2, 1.0, 200)
    partners = rng.choice(200, 30, replace=False)
    weights = rng.integers(1, 4, 30).astype(float)  # ties on purpose
    for settings in (DEFAULT_BLEND, BlendSettings(0.0, 1.0), BlendSettings(3.0, 0.2)):
        full = blend(keys, similarity, partners, weights, 200, settings=settings)
        assert np.all(np.diff(full.scores) <= 0)
        for k in (1, 5, 12, 20, 77):
            short = blend(keys, similarity, partners, weights, k, settings=settings)
            assert short.keys.tolist() == full.keys[:k].tolist()
        # a non-partner never scores above the bound serving cuts an exact list at
        outside = ~np.isin(full.keys, partners)
        bound = [full.score_of_content(float(s)) for s in similarity[full.keys[outside]]]
        assert full.scores[outside] == pytest.approx(np.array(bound, np.float32), abs=1e-6)


@pytest.mark.parametrize(
    ("prior", "max_share"), [(-1.0, 0.5), (float("nan"), 0.5), (10.0, 1.5), (10.0, -0.1)]
)
def test_settings_out_of_range_are_refused(prior: float, max_share: float) -> None:
    with pytest.raises(ValueError, match="blend"):
        BlendSettings(prior=prior, max_share=max_share)
