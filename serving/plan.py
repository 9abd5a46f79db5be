"""One query, stated once: what the neighbours are of, how many, which videos may appear, where
they come from, how much work the search may do, how the list is re-ranked and which page of it
is wanted. Every entry point (``GET /similar/{id}``, ``POST /similar``, uploads, the page)
builds one :class:`QueryPlan`; :func:`serving.pipeline.run` runs it.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from recsys.choices import SimilarSource
from recsys.events.hybrid import DEFAULT_BLEND, BlendSettings

DEFAULT_K = 10
MAX_K = 1000
#: Candidates a diversity re-ranking chooses from (the same for every k and page, so pages of
#: one list agree): the best this many after filters, near-duplicates and channel caps.
DEFAULT_POOL = 100
#: Cosine similarity of two embeddings at and above which the later one is a near-duplicate
#: (a re-upload: scaled, cropped or re-compressed). Chosen for precision: a model trained on
#: related videos pulls siblings close too (up to 0.997 between distinct videos of one synthetic
#: topic), and dropping a real result costs more than showing a copy; exact copies are caught by
#: their content hash whatever this is. ``bench/quality.py`` (near_duplicates) measures it.
DUPLICATE_SIMILARITY = 0.998


@dataclass(frozen=True)
class SearchBudget:
    """The most work one query may do while filters make it search deeper.

    ``max_depth`` bounds the neighbours asked of the index in one round (never below what the
    query needs in its first round: ``k`` plus its exclusions), ``max_effort`` how far an
    approximate index is widened (a multiple of its tuned ``nprobe``/``efSearch``). With growth
    by 4 per round, a query costs at most a handful of rounds of that size.
    """

    max_depth: int = 10_000
    max_effort: int = 16


DEFAULT_BUDGET = SearchBudget()


@dataclass(frozen=True)
class Filters:
    """Which videos may appear (by name: the pipeline resolves names against the snapshot)."""

    category: str | None = None
    channel: str | None = None
    exclude_channels: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()  # video ids never returned
    min_duration: float | None = None
    max_duration: float | None = None
    min_score: float | None = None  # results scoring below are left out
    # The category given by a human, or predicted (recsys.tags) at least this confident; the
    # caller resolves it to the admitted keys (``allowed``, sorted) before the plan runs.
    predicted_category: str | None = None
    min_confidence: float = 0.5
    allowed: np.ndarray | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Rerank:
    """What re-orders or thins the ranked list before it is paged.

    ``diversity`` runs from 0 (pure similarity: the ranked list as it is) to 1 (each next
    result is the one least like those already chosen): maximal marginal relevance over the
    best ``pool`` candidates, choosing ``(1 - diversity) * relevance - diversity * (similarity
    to the closest result already chosen)``.
    """

    dedup: bool = True
    diversity: float = 0.0
    max_per_channel: int | None = None
    pool: int = DEFAULT_POOL
    duplicate_similarity: float = DUPLICATE_SIMILARITY


@dataclass(frozen=True)
class ByVideo:
    """Neighbours of a catalog video (never the video itself)."""

    video_id: str


@dataclass(frozen=True)
class ByExamples:
    """Neighbours of mean(positive) - negative_weight * mean(negative), normalised."""

    positive: tuple[str, ...]
    negative: tuple[str, ...] = ()
    negative_weight: float = 0.5


@dataclass(frozen=True, eq=False)
class ByVector:
    """Neighbours of a vector computed on the fly (an uploaded video), with its per-modality
    vectors for explanations."""

    vector: np.ndarray
    modalities: Mapping[str, np.ndarray] = field(default_factory=dict)


Query = ByVideo | ByExamples | ByVector


@dataclass(frozen=True)
class QueryPlan:
    """One query: run by :func:`serving.pipeline.run`, the same whatever asked it.

    ``source`` None means the snapshot's default (hybrid when the index has a co-watch graph,
    else content); only a catalog video has collaborative neighbours. ``offset`` or
    ``page_token`` (which carries an offset and the index version it was made by) choose the
    page of the final list.
    """

    query: Query
    k: int = DEFAULT_K
    filters: Filters = Filters()
    source: SimilarSource | None = None
    budget: SearchBudget = DEFAULT_BUDGET
    rerank: Rerank = Rerank()
    offset: int = 0
    page_token: str | None = None
    explain: bool = False  # per-modality similarities (and sources)
    moments: bool = False  # the best-matching spans of query and result (serving.moments)
    blend: BlendSettings = DEFAULT_BLEND  # hybrid: how much co-watch decides

    def list_digest(self) -> str:
        """What decides the list being paged (not k, not the page), as a short digest: a page
        token is valid only for the list it came from."""
        query = self.query
        what: object
        if isinstance(query, ByVector):
            what = hashlib.blake2b(np.ascontiguousarray(query.vector).tobytes()).hexdigest()
        elif isinstance(query, ByVideo):
            what = query.video_id
        else:
            what = (query.positive, query.negative, query.negative_weight)
        filters = self.filters
        if filters.allowed is not None:  # not in the digest: the cache must not hold it either
            filters = replace(filters, allowed=None)
        # the text of repr((what, *rest)), with the rest written once per set of parameters
        text = f"({what!r}, {_rest_text(filters, self.rerank, self.source, self.blend)}"
        return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


@functools.lru_cache(maxsize=256)
def _rest_text(f: Filters, r: Rerank, source: SimilarSource | None, blend: BlendSettings) -> str:
    """What decides a list besides its query, as the tail of a tuple's repr (``...)``): the
    same for every request with the same parameters, so it is written once."""
    # plain tuples: their repr is one C call, a dataclass' repr a Python one per field
    rest = (
        (f.category, f.channel, f.exclude_channels, f.exclude),
        (f.min_duration, f.max_duration, f.min_score),
        (f.predicted_category, f.min_confidence),
        (r.dedup, r.diversity, r.max_per_channel, r.pool, r.duplicate_similarity),
        source,
        (blend.prior, blend.max_share),
    )
    return repr(rest)[1:]


__all__ = [
    "DEFAULT_BUDGET",
    "DEFAULT_K",
    "DEFAULT_POOL",
    "DUPLICATE_SIMILARITY",
    "MAX_K",
    "ByExamples",
    "ByVector",
    "ByVideo",
    "Filters",
    "Query",
    "QueryPlan",
    "Rerank",
    "SearchBudget",
]
