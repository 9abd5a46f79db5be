"""Where a build reads its vectors: an in-memory matrix, or the store files, streamed.

A build needs every vector twice, and each time only a part of it at once: a seeded sample to
train on (plus the gate's query vectors), then all of them in order to add. :class:`StoreSource`
serves both from the embedding store's files without ever holding the whole matrix: the
sample is read in place (the files are uncompressed ``.npz``, see
:func:`recsys.store.embeddings.vectors_in_file`), the rows are then read file by file in
chunks of :data:`CHUNK_ROWS`, each file checksummed once just before its rows are used. Ten
million 256-d vectors (10 GB) then cost the build ~64 MB of buffers instead of 10 GB.

Positions are ranks in ascending video-key order, as in :meth:`EmbeddingStore.load`, so an
:class:`ArraySource` over the loaded matrix and a :class:`StoreSource` over the same store
draw the same samples and build the same index.

The files are opened while the bookkeeping rows are read, so a compaction that deletes them
afterwards does not take them away from a build in progress.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import faiss
import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from index.errors import IndexBuildError
from recsys.db.models import EmbeddingShard
from recsys.settings import Settings
from recsys.store.embeddings import (
    LOAD_ATTEMPTS,
    ShardMoved,
    StoreError,
    placements_query,
    vectors_in_file,
)

CHUNK_ROWS = 65_536  # rows added per faiss call (64 MB at 256-d)
_ROWS_PER_QUERY_PART = 200_000  # bookkeeping rows fetched from the database at once
_HASH_BLOCK = 8 << 20


def normalized(vectors: np.ndarray) -> np.ndarray:
    """float32 C-contiguous rows of unit norm (copied only when some row is not already).

    Row by row: a row within 1e-3 of unit norm is kept as it is, every other row is scaled,
    so a matrix normalised whole or in chunks (a streamed build) gives the same rows.
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if not vectors.size:
        return vectors
    norms = np.linalg.norm(vectors, axis=1)
    off = np.abs(norms - 1.0) >= 1e-3
    if not off.any():
        return vectors
    if np.any(norms == 0):
        raise IndexBuildError(
            f"{int(np.sum(norms == 0))} embeddings are all-zero and cannot be normalised; "
            "re-embed those videos"
        )
    out = vectors.copy()
    rows = np.ascontiguousarray(out[off])
    faiss.normalize_L2(rows)
    out[off] = rows
    return out


@dataclass
class Chunk:
    """Consecutive work for the add pass: rows at ``positions`` with their keys, normalised."""

    positions: np.ndarray
    keys: np.ndarray
    vectors: np.ndarray


class VectorSource:
    """``count`` vectors of ``dim`` floats, keyed by ``keys`` (int64, one per position)."""

    keys: np.ndarray
    dim: int

    @property
    def count(self) -> int:
        return int(self.keys.shape[0])

    def take(self, positions: np.ndarray) -> np.ndarray:
        """Normalised rows at ``positions`` (float32, in the order given)."""
        raise NotImplementedError

    def chunks(self) -> Iterator[Chunk]:
        """Every position exactly once, in chunks of at most :data:`CHUNK_ROWS` rows."""
        raise NotImplementedError

    def close(self) -> None:
        return None


class ArraySource(VectorSource):
    """Vectors already in memory (tests, updates, callers with their own matrix)."""

    def __init__(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        self.keys = np.ascontiguousarray(keys, dtype=np.int64)
        self.vectors = vectors
        if vectors.ndim != 2 or vectors.shape[0] != self.keys.shape[0]:
            raise IndexBuildError(f"{self.keys.shape[0]} video keys for {vectors.shape[0]} vectors")
        self.dim = int(vectors.shape[1])

    def take(self, positions: np.ndarray) -> np.ndarray:
        return normalized(self.vectors[np.asarray(positions, dtype=np.int64)])

    def chunks(self) -> Iterator[Chunk]:
        for start in range(0, self.count, CHUNK_ROWS):
            end = min(start + CHUNK_ROWS, self.count)
            yield Chunk(
                np.arange(start, end, dtype=np.int64),
                self.keys[start:end],
                normalized(self.vectors[start:end]),
            )


@dataclass
class _File:
    name: str
    path: Path
    sha256: str
    handle: BinaryIO
    offset: int  # where the vectors' rows start
    rows: int
    dtype: np.dtype
    verified: bool = False


class StoreSource(VectorSource):
    """The servable embeddings of one model version, read from the store files as needed."""

    def __init__(
        self,
        keys: np.ndarray,
        file_of: np.ndarray,
        row_of: np.ndarray,
        files: list[_File],
        dim: int,
    ) -> None:
        self.keys = keys
        self.file_of = file_of  # int32: which of ``files`` holds each position
        self.row_of = row_of  # int64: its row there
        self.files = files
        self.dim = dim

    @classmethod
    def open(
        cls,
        settings: Settings,
        session: Session,
        model_version: str,
        *,
        servable_only: bool = True,
    ) -> StoreSource:
        """Read the bookkeeping rows (streamed) and open every file they name; a compaction
        that moved rows meanwhile is seen as a vanished file and the rows are read again."""
        for attempt in range(1, LOAD_ATTEMPTS + 1):
            try:
                return cls._open_once(settings, session, model_version, servable_only)
            except ShardMoved:
                if attempt == LOAD_ATTEMPTS:
                    raise
                session.expire_all()
        raise AssertionError("unreachable")

    @classmethod
    def _open_once(
        cls, settings: Settings, session: Session, model_version: str, servable_only: bool
    ) -> StoreSource:
        query = placements_query(model_version, servable_only=servable_only)
        codes: dict[str, int] = {}
        keys, file_of, row_of = [], [], []
        result = session.execute(query.execution_options(yield_per=_ROWS_PER_QUERY_PART))
        for part in result.partitions():
            size = len(part)
            keys.append(np.fromiter((r[0] for r in part), dtype=np.int64, count=size))
            file_of.append(
                np.fromiter(
                    (codes.setdefault(r[1], len(codes)) for r in part), dtype=np.int32, count=size
                )
            )
            row_of.append(np.fromiter((r[2] for r in part), dtype=np.int64, count=size))
        registered = {
            shard.name: shard
            for shard in session.scalars(
                select(EmbeddingShard).where(EmbeddingShard.model_version == model_version)
            )
        }
        root = settings.embeddings_dir
        files: list[_File] = []
        dim = 0
        try:
            for name in codes:  # in code order
                meta = registered.get(name)
                if meta is None:
                    raise ShardMoved(f"embedding shard {name} is not registered")
                path = root / meta.path
                try:
                    handle = path.open("rb")
                except FileNotFoundError:
                    raise ShardMoved(f"embedding shard file {path} is missing") from None
                files.append(_File(name, path, meta.sha256, handle, 0, 0, np.dtype(np.float32)))
                try:
                    offset, shape, dtype = vectors_in_file(path)
                except (OSError, KeyError, ValueError) as error:
                    raise StoreError(
                        f"embedding shard {path} is unreadable ({error}); re-embed"
                    ) from error
                if len(shape) != 2 or (dim and shape[1] != dim):
                    raise StoreError(f"embedding shard {path} has vectors of shape {shape}")
                dim = int(shape[1])
                files[-1].offset, files[-1].rows, files[-1].dtype = offset, int(shape[0]), dtype
        except BaseException:
            for opened in files:
                opened.handle.close()
            raise
        if not files:
            dim = next(iter(registered.values())).dim if registered else 0
        return cls(
            np.concatenate(keys) if keys else np.zeros(0, np.int64),
            np.concatenate(file_of) if file_of else np.zeros(0, np.int32),
            np.concatenate(row_of) if row_of else np.zeros(0, np.int64),
            files,
            dim,
        )

    def close(self) -> None:
        for file in self.files:
            file.handle.close()

    def __enter__(self) -> StoreSource:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- reading ----------------------------------------------------------------------
    def _ids(self, file: _File) -> np.ndarray:
        import zipfile

        file.handle.seek(0)
        with zipfile.ZipFile(file.handle) as archive, archive.open("ids.npy") as member:
            return np.lib.format.read_array(member, allow_pickle=False)

    def _check_keys(self, file: _File, rows: np.ndarray, positions: np.ndarray) -> None:
        ids = self._ids(file)
        if rows.size and (int(rows.max()) >= ids.shape[0] or int(rows.max()) >= file.rows):
            raise StoreError(f"embedding shard {file.path} is shorter than the database says")
        if not np.array_equal(ids[rows], self.keys[positions]):
            raise StoreError(f"embedding shard {file.path} disagrees with the database; re-embed")

    def _verify(self, file: _File) -> None:
        """Checksum the whole file once (read through the open handle, so what is checked is
        what is read)."""
        if file.verified:
            return
        digest = hashlib.sha256()
        fd, at = file.handle.fileno(), 0
        while True:
            block = os.pread(fd, _HASH_BLOCK, at)
            if not block:
                break
            digest.update(block)
            at += len(block)
        if digest.hexdigest() != file.sha256:
            raise StoreError(f"embedding shard {file.path} fails its checksum; re-embed")
        file.verified = True

    def _read(self, file: _File, lo: int, hi: int) -> np.ndarray:
        """Rows ``[lo, hi)`` of one file into a fresh float32 buffer (positional reads, so the
        build's memory holds one chunk, not a mapping of the file)."""
        out = np.empty((hi - lo, self.dim), dtype=file.dtype)
        view = memoryview(out).cast("B")  # type: ignore[arg-type]
        row_bytes = self.dim * file.dtype.itemsize
        at, done = file.offset + lo * row_bytes, 0
        while done < len(view):
            got = os.preadv(file.handle.fileno(), [view[done:]], at + done)
            if got <= 0:
                raise StoreError(f"embedding shard {file.path} is truncated; re-embed")
            done += got
        return out if out.dtype == np.float32 else out.astype(np.float32)

    def _by_file(self, positions: np.ndarray) -> Iterator[tuple[_File, np.ndarray, np.ndarray]]:
        """(file, positions in it, their rows), rows ascending, files by their first key."""
        owners = self.file_of[positions]
        firsts: list[tuple[int, int]] = []
        for code in np.unique(owners).tolist():
            firsts.append((int(np.flatnonzero(owners == code)[0]), code))
        for _, code in sorted(firsts):
            mine = positions[owners == code]
            rows = self.row_of[mine]
            order = np.argsort(rows, kind="stable")
            yield self.files[code], mine[order], rows[order]

    def take(self, positions: np.ndarray) -> np.ndarray:
        positions = np.asarray(positions, dtype=np.int64)
        out = np.empty((positions.size, self.dim), dtype=np.float32)
        where = {int(p): i for i, p in enumerate(positions.tolist())}
        for file, mine, rows in self._by_file(positions):
            self._check_keys(file, rows, mine)
            mapped = np.memmap(
                file.handle,
                dtype=file.dtype,
                mode="r",
                offset=file.offset,
                shape=(file.rows, self.dim),
            )
            try:
                out[[where[int(p)] for p in mine.tolist()]] = mapped[rows]
            finally:
                del mapped  # unmapped: its pages leave this process
        return normalized(out)

    def chunks(self) -> Iterator[Chunk]:
        everything = np.arange(self.count, dtype=np.int64)
        for file, mine, rows in self._by_file(everything):
            self._verify(file)
            self._check_keys(file, rows, mine)
            for start in range(0, rows.size, CHUNK_ROWS):
                part, at = rows[start : start + CHUNK_ROWS], mine[start : start + CHUNK_ROWS]
                lo, hi = int(part[0]), int(part[-1]) + 1
                block = self._read(file, lo, hi)
                vectors = block if hi - lo == part.size else block[part - lo]
                yield Chunk(at, self.keys[at], normalized(vectors))


__all__ = ["CHUNK_ROWS", "ArraySource", "Chunk", "StoreSource", "VectorSource"]
