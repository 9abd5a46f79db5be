"""Per-modality vectors mapped read-only, one copy in the page cache for every API worker.

The explanations of ``/similar`` need each served video's per-modality vectors (e.g. visual
and audio, a few hundred floats each: ~2.5 KB per video, 25 GB at 10M videos if every worker
kept its own). The first worker that serves a model version writes them out of the embedding
store into plain ``.npy`` files (temporary name, fsync, rename), named by a fingerprint of the
store's shard files; every worker then maps those files with ``np.load(mmap_mode="r")``. A
refresh or a compaction changes the shards, hence the fingerprint, hence the files: older
fingerprints are removed once a new one is complete (workers still mapping them keep their
pages until they swap). Each file's sha256 is recorded when it is written and checked once per
file before it is mapped (:mod:`serving.derived`): a damaged folder is written again from the
store.
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
from serving.derived import DamagedFile, discard, map_verified, save_array

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
    if (directory / DONE_FILE).is_file():
        try:
            return _map(directory)
        except DamagedFile as error:
            log.warning(
                "%s; writing the per-modality vectors of model %s again from the store",
                error,
                model_version,
            )
            discard(directory)
    if not (directory / DONE_FILE).is_file():
        _write(settings, database, model_version, directory)
        _remove_others(root, keep=digest)
    return _map(directory)


def _map(directory: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The keys and matrices of one written folder, each file checked against its sha256."""
    described = directory / DONE_FILE
    try:
        done = json.loads(described.read_text())
        sums, names = done["sha256"], done["modalities"]
        keys = map_verified(directory / KEYS_FILE, sums[KEYS_FILE])
        modalities = {
            name: map_verified(directory / f"{name}.npy", sums[f"{name}.npy"]) for name in names
        }
    except (OSError, ValueError, KeyError, TypeError) as error:
        if isinstance(error, DamagedFile):
            raise
        raise DamagedFile(described, f"does not describe the vectors ({error!r})") from None
    return keys, modalities


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
        sums = {KEYS_FILE: save_array(tmp / KEYS_FILE, np.asarray(keys, dtype=np.int64))}
        for name, matrix in modalities.items():
            sums[f"{name}.npy"] = save_array(
                tmp / f"{name}.npy", np.asarray(matrix, dtype=np.float32)
            )
        (tmp / DONE_FILE).write_text(json.dumps({"modalities": sorted(modalities), "sha256": sums}))
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


def _remove_others(root: Path, keep: str) -> None:
    for path in root.iterdir():
        if path.name != keep and not path.name.startswith("."):
            shutil.rmtree(path, ignore_errors=True)


__all__ = ["mapped_modalities", "mapped_root"]
