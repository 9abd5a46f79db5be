"""Embeddings per model version, as append-only shard files plus DB bookkeeping.

A shard (``embeddings/<model_version>/<name>.npz``: the video keys, stored as ``ids``, the
vectors and optional per-modality matrices) is written to a temporary name, fsynced and
renamed, and its directory fsynced; only then are its ``embeddings`` rows committed, in the
same transaction as the shard row. A process killed in between leaves an unreferenced file
that readers ignore and :meth:`EmbeddingStore.collect_garbage` removes, so re-running the job
is always safe and never duplicates a (video, model version) pair.
"""

from __future__ import annotations

import hashlib
import os
import struct
import uuid
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
from sqlalchemy import Select, delete, insert, select
from sqlalchemy.orm import Session

from recsys.checksums import sha256_file
from recsys.db.models import Embedding, EmbeddingShard, Video, VideoStatus, utcnow
from recsys.durable import ensure_dir, fsync_dir
from recsys.errors import RecsysError
from recsys.ids import VideoKey
from recsys.settings import Settings


class StoreError(RecsysError, RuntimeError):
    """A shard is missing, corrupt or inconsistent with the database (re-embed to repair).
    Still a ``RuntimeError`` for callers that catch that."""


class ShardMoved(StoreError):
    """A shard named by the rows just read is gone: a compaction moved its rows meanwhile (the
    reader reads the rows again), or the file was lost (after a few tries, the error stands)."""


#: What numpy and zipfile raise for a shard file that is truncated or not an archive.
UNREADABLE = (OSError, ValueError, EOFError, zipfile.BadZipFile)
# A reader racing a compaction finds the rows moved at most once per compacted file; three
# reads of the bookkeeping are plenty before a missing file is reported as lost.
LOAD_ATTEMPTS = 3


@dataclass
class EmbeddingMatrix:
    """Vectors of one model version: row i belongs to the video keyed ``video_keys[i]``."""

    model_version: str
    video_keys: np.ndarray  # int64 (n,): VideoKey values (videos.id, the FAISS ids), ascending
    vectors: np.ndarray  # float32 (n, dim)
    modalities: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (n, d_m)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1]) if self.vectors.ndim == 2 else 0

    def __len__(self) -> int:
        return int(self.video_keys.shape[0])


def placements_query(model_version: str, *, servable_only: bool) -> Select[VideoKey, str, int]:
    """(video key, shard, row) of every stored vector of ``model_version`` in key order; with
    ``servable_only``, deleted and failed videos left out. One definition for the store's
    loader and the index build's streamed reader, so both see the same rows in the same order."""
    query = (
        select(Embedding.video_key, Embedding.shard, Embedding.row)
        .join(Video, Video.id == Embedding.video_key)
        .where(Embedding.model_version == model_version)
        .order_by(Embedding.video_key)
    )
    if servable_only:
        query = query.where(
            Video.status.notin_([VideoStatus.DELETED.value, VideoStatus.FAILED.value])
        )
    return query


def vectors_in_file(path: Path | str) -> tuple[int, tuple[int, ...], np.dtype]:
    """(byte offset, shape, dtype) of the ``vectors`` array inside one store file.

    Store files are uncompressed ``.npz`` archives (:func:`write_npz`), so the matrix lies in the
    file as plain rows: a reader can read or map the rows it wants in place instead of loading
    the whole matrix (the index build streams ten million vectors this way).
    """
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("vectors.npy")
    if info.compress_type != zipfile.ZIP_STORED:
        raise StoreError(f"embedding shard {path} is compressed; it cannot be read in place")
    with open(path, "rb") as handle:
        handle.seek(info.header_offset)
        local = handle.read(30)  # the local file header: its name and extra field follow
        signature, *_, name_length, extra_length = struct.unpack("<4s5H3L2H", local)
        if signature != b"PK\x03\x04":
            raise StoreError(f"embedding shard {path} has a damaged archive header; re-embed")
        handle.seek(info.header_offset + 30 + name_length + extra_length)
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
        if fortran:
            raise StoreError(f"embedding shard {path} holds a Fortran-ordered matrix")
        return handle.tell(), tuple(shape), np.dtype(dtype)


class _HashingWriter:
    """A forward-only file wrapper that hashes the bytes on their way to the file.

    It has no ``seek``, so ``zipfile`` writes each member's sizes after its data (a data
    descriptor) instead of going back to patch its header: the bytes that pass through are the
    file's bytes, in order, and the digest is the file's sha256 without reading it back.
    """

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()
        self.position = 0

    def write(self, data: bytes | memoryview) -> int:
        view = memoryview(data)
        self.digest.update(view)
        self.handle.write(view)
        self.position += view.nbytes
        return view.nbytes

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        self.handle.flush()

    def close(self) -> None:
        """The file is the caller's to close."""


def write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> str:
    """Write ``arrays`` as an uncompressed ``.npz`` (what ``np.load`` and :func:`vectors_in_file`
    read) and fsync it; returns the file's sha256, computed as it is written.

    Each array's bytes go to the file straight from its buffer (``np.savez`` copies them first)
    and are hashed on the way, so a shard is neither copied nor read back for its checksum.
    """
    with path.open("wb") as handle:
        writer = _HashingWriter(handle)
        with zipfile.ZipFile(writer, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
            for key, value in arrays.items():
                array = np.ascontiguousarray(value)
                with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
                    header = np.lib.format.header_data_from_array_1_0(array)
                    try:
                        np.lib.format.write_array_header_1_0(member, header)
                    except ValueError:  # a header too long for format 1.0
                        np.lib.format.write_array_header_2_0(member, header)
                    if array.size:
                        member.write(array.data.cast("B"))
        handle.flush()
        os.fsync(handle.fileno())
    return writer.digest.hexdigest()


def _unreadable(path: Path, error: BaseException) -> StoreError:
    return StoreError(f"embedding shard {path} cannot be read ({error}); re-embed")


class EmbeddingStore:
    """Reads and writes the embedding shards under ``$RECSYS_HOME/embeddings``."""

    def __init__(self, settings: Settings) -> None:
        self.root = settings.embeddings_dir

    def _dir(self, model_version: str) -> Path:
        return self.root / model_version

    def write_batch(
        self,
        session: Session,
        model_version: str,
        video_keys: Sequence[VideoKey] | np.ndarray,
        content_hashes: Sequence[str],
        extractor_version: str,
        vectors: np.ndarray,
        modalities: Mapping[str, np.ndarray] | None = None,
    ) -> str:
        """Persist one batch and add its bookkeeping rows to ``session`` (caller commits).

        ``video_keys`` are internal keys (``videos.id``), one per row of ``vectors``. Rows
        already present for (video, model version) are replaced, so a re-embed of a changed
        video leaves exactly one embedding. A shape mismatch is a caller bug (``ValueError``).
        """
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        keys = np.asarray(video_keys, dtype=np.int64)
        if vectors.ndim != 2 or vectors.shape[0] != keys.shape[0]:
            raise ValueError(
                f"batch for model {model_version}: {keys.shape[0]} video keys but vectors of "
                f"shape {vectors.shape}"
            )
        name = self.write_shard(session, model_version, keys, vectors, modalities)
        created_at = utcnow()
        session.execute(
            delete(Embedding).where(
                Embedding.model_version == model_version,
                Embedding.video_key.in_([int(k) for k in keys]),
            )
        )
        # Core bulk insert: one executemany instead of one ORM object per row (1M rows: minutes),
        # on the table (column names), not the ORM entity, whose bulk path costs ~2x per row.
        session.execute(
            insert(Embedding.__table__),  # type: ignore[arg-type]
            [
                {
                    "video_id": int(video_key),  # the column behind Embedding.video_key
                    "model_version": model_version,
                    "content_hash": content_hash,
                    "extractor_version": extractor_version,
                    "shard": name,
                    "row": row,
                    "created_at": created_at,
                }
                for row, (video_key, content_hash) in enumerate(
                    zip(keys.tolist(), content_hashes, strict=True)
                )
            ],
        )
        return name

    def write_shard(
        self,
        session: Session,
        model_version: str,
        video_keys: np.ndarray,
        vectors: np.ndarray,
        modalities: Mapping[str, np.ndarray] | None = None,
    ) -> str:
        """Write one shard file durably (temporary name, fsync, rename, directory fsync) and
        register it in ``session``; returns its name. Rows pointing at it are the caller's."""
        directory = ensure_dir(self._dir(model_version))
        name = f"{model_version}-{uuid.uuid4().hex}"
        final = directory / f"{name}.npz"
        tmp = directory / f".{name}.tmp.npz"
        arrays = {"ids": video_keys, "vectors": vectors}  # "ids": the shard format's name
        for key, matrix in (modalities or {}).items():
            arrays[f"modality_{key}"] = np.asarray(matrix, dtype=np.float32)
        try:
            sha256 = write_npz(tmp, arrays)
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(directory)  # the rename is durable before the rows naming it can commit
        session.add(
            EmbeddingShard(
                name=name,
                model_version=model_version,
                path=str(final.relative_to(self.root)),
                count=int(video_keys.shape[0]),
                dim=int(vectors.shape[1]),
                sha256=sha256,
            )
        )
        session.flush()
        return name

    def has_modalities(self, session: Session, model_version: str) -> bool:
        """Whether the model's shards carry per-modality vectors (one shard's keys tell), so a
        store without them is not read in full just to find out."""
        shard = session.scalars(
            select(EmbeddingShard).where(EmbeddingShard.model_version == model_version).limit(1)
        ).first()
        if shard is None:
            return False
        try:
            with np.load(self.root / shard.path, allow_pickle=False) as data:
                return any(key.startswith("modality_") for key in data.files)
        except UNREADABLE:
            return True  # let the full load report the problem

    def load(
        self,
        session: Session,
        model_version: str,
        *,
        servable_only: bool = True,
        with_modalities: bool = False,
        verify: bool = True,
        with_vectors: bool = True,
    ) -> EmbeddingMatrix:
        """All current embeddings of a model version, sorted by video key.

        ``servable_only`` leaves out deleted and failed videos, which must never be indexed.
        ``with_vectors=False`` skips the fused vectors (an ``(n, 0)`` matrix): the API wants
        only the per-modality ones, the index already holds the fused ones. Each file is read
        (and checksummed) once. A compaction that moves rows while this reads is seen as a
        vanished shard: the rows are read again (each query sees the latest commit).
        """
        for attempt in range(1, LOAD_ATTEMPTS + 1):
            try:
                return self._load_once(
                    session,
                    model_version,
                    servable_only=servable_only,
                    with_modalities=with_modalities,
                    verify=verify,
                    with_vectors=with_vectors,
                )
            except ShardMoved:
                if attempt == LOAD_ATTEMPTS:
                    raise
                session.expire_all()
        raise AssertionError("unreachable")

    def _load_once(
        self,
        session: Session,
        model_version: str,
        *,
        servable_only: bool,
        with_modalities: bool,
        verify: bool,
        with_vectors: bool,
    ) -> EmbeddingMatrix:
        query = placements_query(model_version, servable_only=servable_only)
        rows = session.execute(query).all()
        shards = {
            shard.name: shard
            for shard in session.scalars(
                select(EmbeddingShard).where(EmbeddingShard.model_version == model_version)
            )
        }
        by_shard: dict[str, list[tuple[int, int, int]]] = {}
        for position, (video_key, shard, row) in enumerate(rows):
            by_shard.setdefault(shard, []).append((position, int(video_key), int(row)))
        video_keys = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        vectors: np.ndarray | None = None
        modalities: dict[str, np.ndarray] = {}
        for shard_name, members in by_shard.items():
            meta = shards.get(shard_name)
            if meta is None:
                raise ShardMoved(
                    f"embedding shard {shard_name} is not registered; re-run `recsys embed` "
                    f"for model {model_version}"
                )
            path = self.root / meta.path
            try:
                if verify and sha256_file(path) != meta.sha256:
                    raise StoreError(f"embedding shard {path} fails its checksum; re-embed")
                data = np.load(path, allow_pickle=False)
            except FileNotFoundError:
                raise ShardMoved(
                    f"embedding shard file {path} is missing; re-run `recsys embed` to rebuild it"
                ) from None
            except UNREADABLE as error:
                raise _unreadable(path, error) from None
            try:
                with data:
                    shard_vectors = (
                        data["vectors"] if with_vectors else np.zeros((0, 0), np.float32)
                    )
                    shard_keys = data["ids"]
                    positions = np.array([m[0] for m in members], dtype=np.int64)
                    shard_rows = np.array([m[2] for m in members], dtype=np.int64)
                    if not np.array_equal(shard_keys[shard_rows], video_keys[positions]):
                        raise StoreError(
                            f"embedding shard {path} disagrees with the database; re-embed"
                        )
                    if vectors is None:
                        vectors = np.zeros((len(rows), shard_vectors.shape[1]), dtype=np.float32)
                    if with_vectors:
                        vectors[positions] = shard_vectors[shard_rows]
                    if with_modalities:
                        for key in data.files:
                            if not key.startswith("modality_"):
                                continue
                            matrix = data[key]
                            name = key.removeprefix("modality_")
                            if name not in modalities:
                                modalities[name] = np.zeros(
                                    (len(rows), matrix.shape[1]), dtype=np.float32
                                )
                            modalities[name][positions] = matrix[shard_rows]
            except UNREADABLE as error:  # a member cut short (read without ``verify``)
                raise _unreadable(path, error) from None
        if vectors is None:
            dim = next(iter(shards.values())).dim if shards else 0
            vectors = np.zeros((0, dim), dtype=np.float32)
        return EmbeddingMatrix(model_version, video_keys, vectors, modalities)

    def collect_garbage(self, session: Session, model_version: str) -> int:
        """Delete shard files (and rows) no embedding points at; returns files removed."""
        live = set(
            session.scalars(
                select(Embedding.shard).where(Embedding.model_version == model_version).distinct()
            )
        )
        removed = 0
        for shard in session.scalars(
            select(EmbeddingShard).where(EmbeddingShard.model_version == model_version)
        ).all():
            if shard.name not in live:
                (self.root / shard.path).unlink(missing_ok=True)
                session.delete(shard)
                removed += 1
        directory = self._dir(model_version)
        if directory.exists():
            registered = {
                Path(p).name
                for p in session.scalars(
                    select(EmbeddingShard.path).where(EmbeddingShard.model_version == model_version)
                )
            }
            for path in directory.iterdir():
                if path.name not in registered:
                    path.unlink(missing_ok=True)
                    removed += 1
        return removed
