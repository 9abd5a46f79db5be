"""Compaction: the many small batch shards of a model version become a few large files.

A refresh commits one shard per batch (64 rows by default), so ten million videos would leave
about 150,000 files that every reader opens and checksums. Compaction rewrites the live rows of
the small shards into files of up to ``target_rows`` rows each.

Crash safety is the order of the steps: each new file is written, fsynced and renamed into
place and registered, and the ``embeddings`` rows it holds are pointed at it, in one
transaction per file. Only after that commit does garbage collection delete the old shards that
no row names any more. Killed before a commit, the new file is unreferenced (collected at the
next run) and readers keep reading the old shards; killed after it, the rows name the new file
and the old ones are garbage. A reader sees the old shards or the new file, never neither; one
that read the rows just before a commit finds a shard gone and reads the rows again
(:class:`recsys.store.embeddings.ShardMoved`).

The caller holds the model version's refresh lock, so no writer adds rows meanwhile; every
compaction starts by collecting what a killed one left.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from recsys.checksums import sha256_file
from recsys.db import Database
from recsys.db.models import Embedding, EmbeddingShard
from recsys.store.embeddings import EmbeddingStore, StoreError

logger = logging.getLogger(__name__)


@dataclass
class CompactionResult:
    """What one compaction did (all zero when there was too little to compact)."""

    model_version: str
    shards_before: int = 0
    shards_after: int = 0
    files_written: int = 0
    rows_moved: int = 0
    files_removed: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def small_shards(session: Session, model_version: str, target_rows: int) -> tuple[int, list[str]]:
    """(number of shards holding live rows, the names of those with fewer than ``target_rows``)."""
    counts = session.execute(
        select(Embedding.shard, func.count())
        .where(Embedding.model_version == model_version)
        .group_by(Embedding.shard)
    ).all()
    return len(counts), sorted(name for name, count in counts if count < target_rows)


def compact_store(
    store: EmbeddingStore,
    database: Database,
    model_version: str,
    *,
    target_rows: int,
    min_small_shards: int,
) -> CompactionResult:
    """Rewrite the live rows of the small shards of ``model_version`` into files of at most
    ``target_rows`` rows, when at least ``min_small_shards`` small shards exist."""
    started = time.perf_counter()
    result = CompactionResult(model_version)
    with database.session() as session:  # what a compaction killed after its commits left
        result.files_removed = store.collect_garbage(session, model_version)
    with database.session() as session:
        result.shards_before, small = small_shards(session, model_version, target_rows)
    if len(small) < max(2, min_small_shards):
        result.shards_after = result.shards_before
        return result
    verified: set[str] = set()
    for chunk in _row_chunks(database, model_version, small, target_rows):
        with database.session() as session:
            keys, vectors, modalities = _read_rows(store, session, model_version, chunk, verified)
            name = store.write_shard(session, model_version, keys, vectors, modalities)
            session.execute(
                update(Embedding),
                [
                    {"id": embedding_id, "shard": name, "row": row}
                    for row, (embedding_id, _, _) in enumerate(chunk)
                ],
            )
        result.files_written += 1
        result.rows_moved += len(chunk)
    with database.session() as session:
        result.files_removed += store.collect_garbage(session, model_version)
    with database.session() as session:
        result.shards_after = small_shards(session, model_version, target_rows)[0]
    result.seconds = time.perf_counter() - started
    logger.info(
        "compacted model %s: %d shards -> %d (%d rows moved into %d files) in %.1f s",
        model_version,
        result.shards_before,
        result.shards_after,
        result.rows_moved,
        result.files_written,
        result.seconds,
    )
    return result


def _row_chunks(
    database: Database, model_version: str, shards: Sequence[str], target_rows: int
) -> Iterator[list[tuple[int, str, int]]]:
    """The (embedding id, shard, row) of every live row in ``shards``, in chunks of at most
    ``target_rows``, ordered by shard and row so that each source file is read in few passes.

    The rows are read up front: the transactions that repoint them come later."""
    wanted = set(shards)
    with database.session() as session:
        rows = [
            (int(embedding_id), shard, int(row))
            for embedding_id, shard, row in session.execute(
                select(Embedding.id, Embedding.shard, Embedding.row)
                .where(Embedding.model_version == model_version)
                .order_by(Embedding.shard, Embedding.row)
            )
            if shard in wanted
        ]
    for start in range(0, len(rows), target_rows):
        yield rows[start : start + target_rows]


def _read_rows(
    store: EmbeddingStore,
    session: Session,
    model_version: str,
    chunk: list[tuple[int, str, int]],
    verified: set[str],
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """The keys, vectors and per-modality vectors of ``chunk``'s rows, in its order; each
    source file is checksummed once per compaction (``verified``)."""
    members: dict[str, tuple[list[int], list[int]]] = {}
    for position, (_, shard, row) in enumerate(chunk):
        at, rows_of_shard = members.setdefault(shard, ([], []))
        at.append(position)
        rows_of_shard.append(row)
    registered = {
        name: (path, sha256)
        for name, path, sha256 in session.execute(
            select(EmbeddingShard.name, EmbeddingShard.path, EmbeddingShard.sha256).where(
                EmbeddingShard.name.in_(list(members))
            )
        )
    }
    keys = np.empty(len(chunk), dtype=np.int64)
    vectors: np.ndarray | None = None
    modalities: dict[str, np.ndarray] = {}
    for name, (position_list, row_list) in members.items():
        if name not in registered:
            raise StoreError(f"embedding shard {name} of model {model_version} is not registered")
        relative_path, sha256 = registered[name]
        path = store.root / relative_path
        if name not in verified:
            if sha256_file(path) != sha256:
                raise StoreError(
                    f"embedding shard {path} fails its checksum; compaction stopped before "
                    f"touching it (re-embed model {model_version} to repair)"
                )
            verified.add(name)
        positions = np.asarray(position_list, dtype=np.int64)
        rows = np.asarray(row_list, dtype=np.int64)
        with np.load(path, allow_pickle=False) as data:
            shard_vectors = data["vectors"]
            if vectors is None:
                vectors = np.empty((len(chunk), shard_vectors.shape[1]), dtype=np.float32)
            keys[positions] = data["ids"][rows]
            vectors[positions] = shard_vectors[rows]
            for member in data.files:
                if member.startswith("modality_"):
                    matrix = data[member]
                    modality = member.removeprefix("modality_")
                    if modality not in modalities:
                        modalities[modality] = np.zeros(
                            (len(chunk), matrix.shape[1]), dtype=np.float32
                        )
                    modalities[modality][positions] = matrix[rows]
    assert vectors is not None
    return keys, vectors, modalities
