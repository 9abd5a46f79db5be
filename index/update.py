"""Keeping the active index current without a rebuild: remove what must not be served, add
what was embedded since, and say when only a full rebuild will do.

Deletions use ``remove_ids`` where the index type supports it (Flat, IVF); elsewhere (HNSW)
the ids go to the version's exclusion list, which :class:`LoadedIndex` filters at search time.
Additions go into the existing structure (Flat, IVF lists, HNSW graph) as long as the trained
part (IVF centroids, PQ codebooks) still describes the data; past that a rebuild is required.
Every change is published as a new version, gated on recall like a build.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import faiss
import numpy as np
from sqlalchemy import select

from index.construct import is_ivf, normalized
from index.errors import IndexLoadError
from index.evaluate import SearchFn, exact_ground_truth, pick_queries, tune_search
from index.ids import index_ids
from index.load import load_index
from index.manifest import new_version_name
from index.params import SelectorParams
from index.pointer import current_version, version_dir
from index.publish import activate_index, cleanup_versions, record_build, write_version
from recsys.catalog import get_model
from recsys.db import Database
from recsys.db.models import Embedding
from recsys.settings import Settings
from recsys.store import EmbeddingStore

log = logging.getLogger(__name__)
MAX_GROWTH = 2.0  # trained structures serve up to this many times the vectors they saw


@dataclass
class UpdateResult:
    previous_version: str | None
    version: str | None  # the new active version, None when nothing was published
    added: int = 0
    removed: int = 0
    hidden: int = 0  # ids filtered at search time because the type cannot remove them
    rebuild_needed: bool = False
    reason: str = ""
    recall_at_10: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _changed_since(
    database: Database, model_version: str, since: datetime, candidates: np.ndarray
) -> np.ndarray:
    """Ids in ``candidates`` whose embedding was (re)written after ``since``."""
    with database.session() as session:
        # Pre-filtered in SQL with a margin (SQLite keeps timestamps without their zone),
        # then compared exactly here.
        rows = session.execute(
            select(Embedding.video_id, Embedding.created_at).where(
                Embedding.model_version == model_version,
                Embedding.created_at > since - timedelta(days=1),
            )
        ).all()
    changed = np.array(
        [int(vid) for vid, created in rows if created is not None and _utc(created) > since],
        dtype=np.int64,
    )
    return np.intersect1d(changed, candidates)


def _try_remove(index: faiss.Index, ids: np.ndarray) -> bool:
    if not ids.size:
        return True
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    # the IVF hash-table direct map only accepts an explicit array selector
    selector = faiss.IDSelectorArray(ids.size, faiss.swig_ptr(ids))
    try:
        removed = index.remove_ids(selector)
    except RuntimeError:
        return False
    if removed != ids.size:
        log.warning("asked to remove %d ids, index removed %d", ids.size, removed)
    return True


def _hiding(index: faiss.Index, hidden: np.ndarray) -> SearchFn | None:
    """A search function that skips ``hidden`` ids at the index's current knob setting."""
    if not hidden.size:
        return None
    selector = faiss.IDSelectorNot(faiss.IDSelectorBatch(hidden))

    def search(queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        params = SelectorParams(index, selector)  # built per call: it copies nprobe/efSearch
        return index.search(queries, k, params=params.params)

    return search


def update_index(
    settings: Settings,
    database: Database,
    *,
    min_recall: float | None = None,
    publish: bool = True,
) -> UpdateResult:
    """Bring the active index in line with the servable embeddings of its model version."""
    previous = current_version(settings)
    if previous is None:
        return UpdateResult(
            None, None, rebuild_needed=True, reason="no index is active; run `recsys index build`"
        )
    loaded = load_index(version_dir(settings, previous))
    manifest = loaded.manifest
    model_version = loaded.model_version
    index = loaded.index  # a private copy: this process loaded it just now
    # Taken before the embeddings are read: anything (re-)embedded after this moment is newer
    # than the new index and is picked up by the next update.
    snapshot_at = datetime.now(UTC)
    with database.session() as session:
        active_model = get_model(session)
        matrix = EmbeddingStore(settings).load(session, model_version, servable_only=True)
    reasons: list[str] = []
    can_add = True
    if active_model is not None and active_model.version != model_version:
        reasons.append(
            f"the active model is {active_model.version} but index {previous} serves "
            f"{model_version}: run `recsys index build` for the new model"
        )
        can_add = False
    stored = index_ids(index)
    servable = matrix.ids
    to_remove = np.setdiff1d(stored, servable)
    since = _utc(datetime.fromisoformat(manifest.get("embeddings_as_of", manifest["created_at"])))
    changed = _changed_since(database, model_version, since, np.intersect1d(stored, servable))
    to_add = np.setdiff1d(servable, stored)
    hnsw_like = not is_ivf(index) and "HNSW" in str(manifest.get("factory", "")).upper()
    if hnsw_like and changed.size:
        reasons.append(
            f"{changed.size} videos were re-embedded and a graph index cannot replace vectors"
        )
        can_add = False
    trained = int(manifest.get("trained_count", manifest["count"]))
    if is_ivf(index) and stored.size - to_remove.size + to_add.size > MAX_GROWTH * trained:
        reasons.append(
            f"the catalog grew past {MAX_GROWTH:g}× the {trained} vectors the index was "
            "trained on; its centroids/codebooks are stale"
        )
        can_add = False
    if not can_add:
        to_add = np.zeros(0, dtype=np.int64)
        changed = np.zeros(0, dtype=np.int64)
    else:
        to_add = np.union1d(to_add, changed)
    drop = np.union1d(to_remove, changed)
    old_excluded = loaded.excluded
    # hidden ids that are servable again with an unchanged vector can simply be shown again
    unhide = np.intersect1d(old_excluded, np.setdiff1d(servable, changed))
    new_drop = np.setdiff1d(drop, old_excluded) if not changed.size else drop
    if not new_drop.size and not to_add.size and not unhide.size:
        reason = "; ".join(reasons) or f"index {previous} is up to date"
        return UpdateResult(previous, None, rebuild_needed=bool(reasons), reason=reason)

    hidden = np.setdiff1d(old_excluded, unhide)
    if _try_remove(index, drop):
        hidden = np.setdiff1d(hidden, drop)
    elif changed.size:
        raise IndexLoadError(f"index {previous} cannot replace re-embedded vectors")
    else:
        hidden = np.union1d(hidden, drop)
    if to_add.size:
        positions = np.searchsorted(servable, to_add)
        index.add_with_ids(normalized(matrix.vectors[positions]), to_add)
    # hidden ids that are no longer stored need no filtering
    stored = index_ids(index)
    hidden = np.intersect1d(hidden, stored)

    min_recall = float(manifest.get("min_recall", 0.95) if min_recall is None else min_recall)
    served_ids = np.setdiff1d(stored, hidden)
    keep = np.isin(servable, served_ids)
    vectors = normalized(matrix.vectors[keep])
    positions = pick_queries(vectors.shape[0], 1000, np.zeros(0, dtype=np.int64))
    truth = exact_ground_truth(vectors, servable[keep], vectors[positions])
    # measure what users get: searches that skip hidden ids
    tuned = tune_search(index, truth, min_recall, search=_hiding(index, hidden))
    if not tuned.reached:
        return UpdateResult(
            previous,
            None,
            rebuild_needed=True,
            reason=f"after the update recall@10 would be {tuned.recall:.4f} < {min_recall}; "
            "run `recsys index build`",
            recall_at_10=tuned.recall,
        )
    fields = {
        key: value
        for key, value in manifest.items()
        if key not in ("version", "sha256", "excluded_sha256", "excluded_count", "file_bytes")
    }
    fields.update(
        parent_version=previous,
        search_params=tuned.params,
        recall_at_10=tuned.recall,
        recall_curve=tuned.curve,
        min_recall=min_recall,
        embeddings_as_of=snapshot_at.isoformat(),
        updated_from=previous,
    )
    version = new_version_name()
    directory, new_manifest = write_version(
        settings, index, fields, excluded=hidden, version=version
    )
    record_build(database, new_manifest, directory, status="built", reason=f"update of {previous}")
    if publish:
        activate_index(settings, database, version)
        cleanup_versions(settings, database)
    return UpdateResult(
        previous,
        version,
        added=int(to_add.size),
        removed=int(drop.size),
        hidden=int(hidden.size),
        rebuild_needed=bool(reasons),
        reason="; ".join(reasons) or "updated in place",
        recall_at_10=tuned.recall,
    )
