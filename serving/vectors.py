"""Per-modality vectors mapped read-only, one copy in the page cache for every API worker.

The explanations of ``/similar`` need each served video's per-modality vectors (e.g. visual
and audio, a few hundred floats each: ~2.5 KB per video, 25 GB at 10M videos if every worker
kept its own). The first worker that serves a model version writes them out of the embedding
store into plain ``.npy`` files (temporary name, fsync, rename), named by a fingerprint of the
store's shard files; every worker then maps those files with ``np.load(mmap_mode="r")``. A
refresh or a compaction changes the shards, hence the fingerprint, hence the files: older
fingerprints are removed once a new one is complete (workers still mapping them keep their
pages until they swap).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
from sqlalchemy import select

from recsys.db import Database
from recsys.db.models import EmbeddingShard
from recsys.durable import ensure_dir, fsync_dir
from recsys.settings import Settings
from recsys.store import EmbeddingStore

log = logging.getLogger(__name__)
KEYS_FILE = "video_keys.npy"
DONE_FILE = "modalities.json"


def mapped_root(settings: Settings, model_version: str) -> Path:
    return settings.embeddings_dir / ".mapped" / model_version


def fingerprint(database: Database, model_version: str) -> str | None:
    """A digest of the model version's shard files (None when it has none)."""
    with database.session() as session:
        shards = session.execute(
            select(EmbeddingShard.name, EmbeddingShard.sha256)
            .where(EmbeddingShard.model_version == model_version)
            .order_by(EmbeddingShard.name)
        ).all()
    if not shards:
        return None
    digest = hashlib.sha256()
    for name, sha256 in shards:
        digest.update(f"{name}:{sha256}\n".encode())
    return digest.hexdigest()[:24]


def mapped_modalities(
    settings: Settings, database: Database, model_version: str
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(sorted video keys, name -> read-only mapped matrix) of a model version; empty when the
    store holds no per-modality vectors for it."""
    digest = fingerprint(database, model_version)
    if digest is None:
        return np.zeros(0, dtype=np.int64), {}
    root = mapped_root(settings, model_version)
    directory = root / digest
    if not (directory / DONE_FILE).is_file():
        _write(settings, database, model_version, directory)
        _remove_others(root, keep=digest)
    names = json.loads((directory / DONE_FILE).read_text())["modalities"]
    keys = np.load(directory / KEYS_FILE, mmap_mode="r", allow_pickle=False)
    modalities = {
        name: np.load(directory / f"{name}.npy", mmap_mode="r", allow_pickle=False)
        for name in names
    }
    return np.asarray(keys), modalities


def _write(settings: Settings, database: Database, model_version: str, directory: Path) -> None:
    store = EmbeddingStore(settings)
    with database.session() as session:
        if store.has_modalities(session, model_version):
            stored = store.load(  # all rows: the fingerprint covers the files, not statuses
                session,
                model_version,
                servable_only=False,
                with_modalities=True,
                with_vectors=False,
            )
            keys, modalities = stored.video_keys, stored.modalities
        else:
            keys, modalities = np.zeros(0, dtype=np.int64), {}
    tmp = ensure_dir(directory.parent / f".{directory.name}.{uuid.uuid4().hex}.tmp")
    try:
        _save(tmp / KEYS_FILE, np.ascontiguousarray(keys, dtype=np.int64))
        for name, matrix in modalities.items():
            _save(tmp / f"{name}.npy", np.ascontiguousarray(matrix, dtype=np.float32))
        (tmp / DONE_FILE).write_text(json.dumps({"modalities": sorted(modalities)}))
        fsync_dir(tmp)
        try:
            os.rename(tmp, directory)  # another worker may have won the race: same content
        except OSError:
            if not (directory / DONE_FILE).is_file():
                raise
        fsync_dir(directory.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("per-modality vectors of model %s mapped from %s", model_version, directory)


def _save(path: Path, array: np.ndarray) -> None:
    with path.open("wb") as handle:
        np.save(handle, array, allow_pickle=False)
        handle.flush()
        os.fsync(handle.fileno())


def _remove_others(root: Path, keep: str) -> None:
    for path in root.iterdir():
        if path.name != keep and not path.name.startswith("."):
            shutil.rmtree(path, ignore_errors=True)


__all__ = ["mapped_modalities", "mapped_root"]
