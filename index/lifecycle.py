"""One index lifecycle: a candidate index → recall gate → version directory → pointer.

``build`` (a new index from a model's embeddings) and ``update`` (the active index with deleted
videos removed and new ones added) differ only in how they make the candidate. Both then call
:func:`gate_and_publish`, which:

1. picks held-out queries (outside the training sample when there is one),
2. computes their exact neighbours among the vectors the candidate serves,
3. tunes the search knob to the recall gate, measuring what users get (hidden keys skipped),
4. on a miss records the candidate as ``rejected`` and raises :class:`RecallTooLow` (nothing
   is written, the served index is unchanged),
5. writes the version directory and its manifest, records the build,
6. (when publishing) activates it, i.e. verifies it and points ``CURRENT`` at it, and
7. deletes old versions past ``settings.index_keep``.

Step 5 writes the co-watch neighbour lists of the served videos (:mod:`index.cowatch`) into
the same directory, so the graph is published and swapped with the index. Steps 5-7 hold the
publish lock (:func:`recsys.index_pointer.publish_lock`) as one unit, so two
builds publishing at once take turns. The last writer cannot publish older data over newer:
when the served index was made from embeddings read later than the candidate's
(``embeddings_as_of``), the candidate is written and recorded as ``superseded`` but not served,
and :class:`StaleIndexBuild` says so (``recsys index activate VERSION --force`` serves it).
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import faiss
import numpy as np

from index.cowatch import read_cowatch
from index.errors import IndexBuildError, RecallTooLow, StaleIndexBuild
from index.evaluate import (
    FilteredTruth,
    GroundTruth,
    SearchFn,
    TruthBuilder,
    TuneResult,
    filter_subsets,
    pick_queries,
    tune_filtered,
    tune_search,
)
from index.manifest import IndexManifest
from index.options import GateOptions
from index.params import SelectorParams
from index.pointer import current_version
from index.publish import (
    SUPERSEDED,
    activate_index,
    cleanup_versions,
    newer_served_embeddings,
    record_build,
    write_version,
)
from recsys.db import Database
from recsys.index_pointer import publish_lock
from recsys.settings import Settings

log = logging.getLogger(__name__)
Say = Callable[[str], None]


def quiet(_: str) -> None:
    return None


def _no_keys() -> np.ndarray:
    return np.zeros(0, dtype=np.int64)


@dataclass
class GateTruth:
    """The gate's held-out queries and their exact answers, unfiltered and per filter subset."""

    truth: GroundTruth
    filtered: list[FilteredTruth]

    @property
    def queries(self) -> int:
        return int(self.truth.queries.shape[0])


class GateTruthBuilder:
    """The gate's exact answers over vectors that stream past in chunks (a streamed build
    computes them on its add pass instead of holding every vector for one exact search).

    ``keys`` are the served keys by position; ``held_out`` positions are never queries.
    """

    def __init__(self, keys: np.ndarray, held_out: np.ndarray, gate: GateOptions) -> None:
        count = int(keys.shape[0])
        if count == 0:
            raise IndexBuildError(
                "no vectors left to serve; embed videos, then `recsys index build`"
            )
        self.gate = gate.gate
        self.positions = pick_queries(count, self.gate.queries, held_out, self.gate.seed)
        subsets = filter_subsets(count, self.gate.seed, self.gate.k)
        self._subsets = [(selectivity, keys[mask]) for selectivity, mask in subsets]
        self._masks = [mask for _, mask in subsets]
        self._builder: TruthBuilder | None = None

    def start(self, query_vectors: np.ndarray) -> None:
        """The normalised vectors at :attr:`positions`."""
        self._builder = TruthBuilder(query_vectors, self.gate.k, self._masks)

    def add(self, positions: np.ndarray, keys: np.ndarray, vectors: np.ndarray) -> None:
        assert self._builder is not None, "start() first"
        self._builder.add(positions, keys, vectors)

    def finish(self) -> GateTruth:
        assert self._builder is not None, "start() first"
        truth, *within = self._builder.finish()
        filtered = [
            FilteredTruth(selectivity, subset_keys, subset_truth)
            for (selectivity, subset_keys), subset_truth in zip(self._subsets, within, strict=True)
        ]
        self._masks = []
        return GateTruth(truth, filtered)


@dataclass
class Candidate:
    """An index ready for the gate, built from scratch or updated, and what it is.

    ``keys`` are the video keys of every video a search on it may return; ``vectors`` their
    normalised vectors (the exact answers the gate compares against), unless ``truth`` already
    holds those answers (a streamed build computed them while adding); ``hidden`` are keys
    stored in the index that searches must skip; ``held_out`` are row positions that must not
    be queries (the training sample).
    """

    index: faiss.Index
    draft: IndexManifest  # identity and construction; the gate and the files fill in the rest
    vectors: np.ndarray | None
    keys: np.ndarray
    hidden: np.ndarray = field(default_factory=_no_keys)
    held_out: np.ndarray = field(default_factory=_no_keys)
    started: float = field(default_factory=time.perf_counter)  # for build_seconds
    timings: dict[str, float] = field(default_factory=dict)
    action: str = "index build"  # how messages name it
    note: str | None = None  # recorded as the build's status reason
    remedy: str = "Use a larger --memory-budget, another --kind, or a lower --min-recall"
    truth: GateTruth | None = None


@dataclass
class Published:
    """What :func:`gate_and_publish` wrote (and activated, when ``published``)."""

    manifest: IndexManifest
    directory: Path
    published: bool
    tuned: TuneResult
    removed_versions: list[str] = field(default_factory=list)

    @property
    def version(self) -> str:
        return self.manifest.version


def gate_and_publish(
    settings: Settings,
    database: Database,
    candidate: Candidate,
    gate: GateOptions,
    *,
    publish: bool = True,
    progress: Say = quiet,
) -> Published:
    """Gate ``candidate`` on recall, write it as a new version and (``publish``) serve it."""
    gate = gate.gate
    tuned, used_queries = measure(candidate, gate)
    manifest = replace(
        candidate.draft,
        search_params=tuned.params,
        filtered_search_params=tuned.filtered,
        k=gate.k,
        recall_at_k=tuned.recall,
        min_recall=gate.min_recall,
        queries=gate.queries,
        recall_queries=used_queries,
        seed=gate.seed,
        recall_curve=tuned.curve,
        build_seconds=time.perf_counter() - candidate.started,
        timings={**candidate.timings, "tune_s": tuned.seconds},
    )
    if not tuned.reached:
        raise _refused(database, candidate, manifest, tuned, gate)
    served = np.setdiff1d(candidate.keys, candidate.hidden)
    cowatch = read_cowatch(database, served)
    with publish_lock(settings):
        stale = newer_served_embeddings(settings, manifest) if publish else None
        directory, manifest = write_version(
            settings, candidate.index, manifest, excluded=candidate.hidden, cowatch=cowatch
        )
        if stale is not None:
            raise _superseded(settings, database, manifest, directory, stale, candidate)
        record_build(database, manifest, directory, status="built", reason=candidate.note)
        progress(
            f"index {manifest.version}: recall@{gate.k} {tuned.recall:.4f} with {tuned.params}"
        )
        removed: list[str] = []
        if publish:
            try:
                activate_index(settings, database, manifest.version)
            except Exception as error:
                shutil.rmtree(directory, ignore_errors=True)
                record_build(database, manifest, None, status="rejected", reason=str(error))
                raise
            removed = cleanup_versions(settings, database)
            progress(f"published {manifest.version}")
    return Published(manifest, directory, publish, tuned, removed)


def _superseded(
    settings: Settings,
    database: Database,
    manifest: IndexManifest,
    directory: Path,
    problem: str,
    candidate: Candidate,
) -> StaleIndexBuild:
    """Record a candidate kept aside because newer data is served, and the error to raise."""
    served = current_version(settings) or ""
    record_build(database, manifest, directory, status=SUPERSEDED, reason=problem)
    return StaleIndexBuild(
        f"{candidate.action} {manifest.version} not published: {problem}; the served index is "
        f"unchanged. Run `recsys index build` again for an index of the current embeddings, "
        f"or serve this one anyway with `recsys index activate {manifest.version} --force`",
        version=manifest.version,
        served=served,
    )


def measure(candidate: Candidate, gate: GateOptions) -> tuple[TuneResult, int]:
    """Tune the candidate's knob to the gate on held-out queries, unfiltered and (once that
    passes) for filtered queries; (result, queries used)."""
    count = int(candidate.keys.shape[0])
    if count == 0:
        raise IndexBuildError(
            f"{candidate.action}: no vectors left to serve; embed videos, then `recsys index build`"
        )
    truth = candidate.truth
    if truth is None:
        if candidate.vectors is None:
            raise IndexBuildError(f"{candidate.action}: neither vectors nor exact answers given")
        builder = GateTruthBuilder(candidate.keys, candidate.held_out, gate)
        builder.start(candidate.vectors[builder.positions])
        builder.add(np.arange(count), candidate.keys, candidate.vectors)
        truth = builder.finish()
    search = hiding(candidate.index, candidate.hidden)
    tuned = tune_search(candidate.index, truth.truth, gate.min_recall, search=search)
    if tuned.reached:
        started = time.perf_counter()
        tuned.filtered = tune_filtered(
            candidate.index, truth.filtered, gate.min_recall, tuned.params
        )
        tuned.seconds += time.perf_counter() - started
    return tuned, truth.queries


def hiding(index: faiss.Index, hidden: np.ndarray) -> SearchFn | None:
    """A search function that skips ``hidden`` keys at the index's current knob setting."""
    if not hidden.size:
        return None
    selector = faiss.IDSelectorNot(faiss.IDSelectorBatch(hidden))

    def search(queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        params = SelectorParams(index, selector)  # built per call: it copies nprobe/efSearch
        return index.search(queries, k, params=params.params)

    return search


def _refused(
    database: Database,
    candidate: Candidate,
    manifest: IndexManifest,
    tuned: TuneResult,
    gate: GateOptions,
) -> RecallTooLow:
    """Record the refused candidate and the error to raise."""
    reason = (
        f"recall@{gate.k} {tuned.recall:.4f} < required {gate.min_recall:.4f} "
        f"with {manifest.factory} at its best setting {tuned.params}"
    )
    recorded = f"{candidate.note}: {reason}" if candidate.note else reason
    record_build(database, manifest, None, status="rejected", reason=recorded)
    return RecallTooLow(
        f"{candidate.action} {manifest.version} refused: {reason}; the served index is "
        f"unchanged. {candidate.remedy}",
        recall=tuned.recall,
        min_recall=gate.min_recall,
        version=manifest.version,
    )
