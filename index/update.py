"""Keeping the active index current without a rebuild: remove what must not be served, add
what was embedded since, and say when only a full rebuild will do.

Deletions use ``remove_ids`` where the index type supports it (Flat, IVF); elsewhere (HNSW)
the keys go to the version's exclusion list, which :class:`LoadedIndex` filters at search time.
Additions go into the existing structure (Flat, IVF lists, HNSW graph) as long as the trained
part (IVF centroids, PQ codebooks) still describes the data; past that a rebuild is required.
Every change is published as a new version through the same lifecycle as a build
(:func:`index.lifecycle.gate_and_publish`), gated on recall with the build's options: by
default the gate the active index passed, recorded in its manifest.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import faiss
import numpy as np
from sqlalchemy import select

from index.construct import is_ivf
from index.errors import IndexLoadError, RecallTooLow
from index.ids import index_ids
from index.lifecycle import Candidate, Say, gate_and_publish, quiet
from index.load import LoadedIndex, load_index
from index.manifest import new_version_name
from index.options import GateOptions, UpdateOptions
from index.pointer import current_version, version_dir
from index.source import normalized
from recsys.catalog import get_model
from recsys.db import Database
from recsys.db.models import Embedding
from recsys.settings import Settings
from recsys.store import EmbeddingStore

__all__ = ["MAX_GROWTH", "UpdateOptions", "UpdateResult", "update_index"]
log = logging.getLogger(__name__)
MAX_GROWTH = 2.0  # trained structures serve up to this many times the vectors they saw


def _no_keys() -> np.ndarray:
    return np.zeros(0, dtype=np.int64)


@dataclass
class UpdateResult:
    previous_version: str | None
    version: str | None  # the new version, None when nothing was written
    added: int = 0
    removed: int = 0
    hidden: int = 0  # keys filtered at search time because the type cannot remove them
    rebuild_needed: bool = False
    reason: str = ""
    recall_at_k: float | None = None
    k: int | None = None

    @property
    def recall_at_10(self) -> float | None:
        """Deprecated: :attr:`recall_at_k` when the gate measured 10 neighbours, else None."""
        return self.recall_at_k if self.k == 10 else None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready; ``recall_at_10`` is kept for old readers (None unless ``k`` is 10)."""
        return {
            "previous_version": self.previous_version,
            "version": self.version,
            "added": self.added,
            "removed": self.removed,
            "hidden": self.hidden,
            "rebuild_needed": self.rebuild_needed,
            "reason": self.reason,
            "recall_at_k": self.recall_at_k,
            "k": self.k,
            "recall_at_10": self.recall_at_10,
        }


@dataclass
class _Plan:
    """What an update changes in one index; every array holds sorted video keys."""

    reasons: list[str] = field(default_factory=list)  # why a rebuild is (also) needed
    drop: np.ndarray = field(default_factory=_no_keys)  # gone from the catalog, or re-embedded
    add: np.ndarray = field(default_factory=_no_keys)  # new, or re-embedded
    changed: np.ndarray = field(default_factory=_no_keys)  # re-embedded (in drop and add)
    unhide: np.ndarray = field(default_factory=_no_keys)  # hidden, servable again, unchanged
    new_drop: np.ndarray = field(default_factory=_no_keys)  # to drop and not hidden already

    @property
    def empty(self) -> bool:
        return not self.new_drop.size and not self.add.size and not self.unhide.size


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _changed_since(
    database: Database, model_version: str, since: datetime, candidates: np.ndarray
) -> np.ndarray:
    """Keys in ``candidates`` whose embedding was (re)written after ``since``."""
    with database.session() as session:
        # Pre-filtered in SQL with a margin (SQLite keeps timestamps without their zone),
        # then compared exactly here.
        rows = session.execute(
            select(Embedding.video_key, Embedding.created_at).where(
                Embedding.model_version == model_version,
                Embedding.created_at > since - timedelta(days=1),
            )
        ).all()
    changed = np.array(
        [int(key) for key, created in rows if created is not None and _utc(created) > since],
        dtype=np.int64,
    )
    return np.intersect1d(changed, candidates)


def _try_remove(index: faiss.Index, video_keys: np.ndarray) -> bool:
    if not video_keys.size:
        return True
    video_keys = np.ascontiguousarray(video_keys, dtype=np.int64)
    # the IVF hash-table direct map only accepts an explicit array selector
    selector = faiss.IDSelectorArray(video_keys.size, faiss.swig_ptr(video_keys))
    try:
        removed = index.remove_ids(selector)
    except RuntimeError:
        return False
    if removed != video_keys.size:
        log.warning("asked to remove %d keys, index removed %d", video_keys.size, removed)
    return True


def _plan(
    database: Database, loaded: LoadedIndex, servable: np.ndarray, active_model: str | None
) -> _Plan:
    """Compare the index with the servable embeddings of its model: what to drop and add."""
    manifest, index = loaded.manifest, loaded.index
    plan = _Plan()
    can_add = True
    if active_model is not None and active_model != loaded.model_version:
        plan.reasons.append(
            f"the active model is {active_model} but index {loaded.version} serves "
            f"{loaded.model_version}: run `recsys index build` for the new model"
        )
        can_add = False
    stored = index_ids(index)
    gone = np.setdiff1d(stored, servable)
    since = _utc(datetime.fromisoformat(manifest.embeddings_as_of or manifest.created_at))
    changed = _changed_since(
        database, loaded.model_version, since, np.intersect1d(stored, servable)
    )
    new = np.setdiff1d(servable, stored)
    if not is_ivf(index) and "HNSW" in manifest.factory.upper() and changed.size:
        plan.reasons.append(
            f"{changed.size} videos were re-embedded and a graph index cannot replace vectors"
        )
        can_add = False
    trained = manifest.trained_count or manifest.count
    if is_ivf(index) and stored.size - gone.size + new.size > MAX_GROWTH * trained:
        plan.reasons.append(
            f"the catalog grew past {MAX_GROWTH:g}× the {trained} vectors the index was "
            "trained on; its centroids/codebooks are stale"
        )
        can_add = False
    if can_add:
        plan.add, plan.changed = np.union1d(new, changed), changed
    plan.drop = np.union1d(gone, plan.changed)
    hidden = loaded.excluded
    # hidden keys that are servable again with an unchanged vector can simply be shown again
    plan.unhide = np.intersect1d(hidden, np.setdiff1d(servable, plan.changed))
    plan.new_drop = np.setdiff1d(plan.drop, hidden) if not plan.changed.size else plan.drop
    return plan


def _apply(
    loaded: LoadedIndex, plan: _Plan, servable: np.ndarray, vectors: np.ndarray
) -> np.ndarray:
    """Change ``loaded.index`` in place as planned; returns the keys it must keep hidden."""
    index = loaded.index  # a private copy: this process loaded it just now
    hidden = np.setdiff1d(loaded.excluded, plan.unhide)
    if _try_remove(index, plan.drop):
        hidden = np.setdiff1d(hidden, plan.drop)
    elif plan.changed.size:
        raise IndexLoadError(f"index {loaded.version} cannot replace re-embedded vectors")
    else:
        hidden = np.union1d(hidden, plan.drop)
    if plan.add.size:
        positions = np.searchsorted(servable, plan.add)
        index.add_with_ids(normalized(vectors[positions]), plan.add)
    # hidden keys that are no longer stored need no filtering
    return np.intersect1d(hidden, index_ids(index))


def _candidate(
    loaded: LoadedIndex,
    hidden: np.ndarray,
    servable: np.ndarray,
    vectors: np.ndarray,
    *,
    snapshot_at: datetime,
    started: float,
) -> Candidate:
    """The updated index as a lifecycle candidate: it serves its stored keys minus hidden."""
    index = loaded.index
    keep = np.isin(servable, np.setdiff1d(index_ids(index), hidden))
    draft = replace(
        loaded.manifest,
        version=new_version_name(),
        previous_version=loaded.version,
        count=int(index.ntotal),
        embeddings_as_of=snapshot_at.isoformat(),
    )
    return Candidate(
        index=index,
        draft=draft,
        vectors=normalized(vectors[keep]),
        keys=servable[keep],
        hidden=hidden,
        started=started,
        timings={"update_s": time.perf_counter() - started},
        action=f"update of index {loaded.version} to",
        note=f"update of {loaded.version}",
        remedy="Run `recsys index build`",
    )


def update_index(
    settings: Settings,
    database: Database,
    options: UpdateOptions | None = None,
    progress: Say = quiet,
) -> UpdateResult:
    """Bring the active index in line with the servable embeddings of its model version."""
    options = options or UpdateOptions()
    previous = current_version(settings)
    if previous is None:
        return UpdateResult(
            None, None, rebuild_needed=True, reason="no index is active; run `recsys index build`"
        )
    started = time.perf_counter()
    loaded = load_index(version_dir(settings, previous), verify=settings.index_verify)
    # Taken before the embeddings are read: anything (re-)embedded after this moment is newer
    # than the new index and is picked up by the next update.
    snapshot_at = datetime.now(UTC)
    with database.session() as session:
        active_model = get_model(session)
        matrix = EmbeddingStore(settings).load(session, loaded.model_version, servable_only=True)
    servable = matrix.video_keys
    plan = _plan(database, loaded, servable, active_model.version if active_model else None)
    if plan.empty:
        reason = "; ".join(plan.reasons) or f"index {previous} is up to date"
        return UpdateResult(previous, None, rebuild_needed=bool(plan.reasons), reason=reason)
    progress(f"updating index {previous}: -{plan.drop.size} +{plan.add.size} vectors")
    hidden = _apply(loaded, plan, servable, matrix.vectors)
    candidate = _candidate(
        loaded, hidden, servable, matrix.vectors, snapshot_at=snapshot_at, started=started
    )
    gate: GateOptions = options.gate or loaded.manifest.gate()
    try:
        outcome = gate_and_publish(
            settings, database, candidate, gate, publish=options.publish, progress=progress
        )
    except RecallTooLow as refused:
        return UpdateResult(
            previous,
            None,
            rebuild_needed=True,
            reason=f"after the update recall@{gate.k} would be {refused.recall:.4f} < "
            f"{gate.min_recall}; run `recsys index build`",
            recall_at_k=refused.recall,
            k=gate.k,
        )
    return UpdateResult(
        previous,
        outcome.version,
        added=int(plan.add.size),
        removed=int(plan.drop.size),
        hidden=int(hidden.size),
        rebuild_needed=bool(plan.reasons),
        reason="; ".join(plan.reasons) or "updated in place",
        recall_at_k=outcome.tuned.recall,
        k=gate.k,
    )
