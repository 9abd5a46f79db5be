"""Feature packs: many cache entries of one (extractor, version) key in one immutable file.

One file per entry would cost a re-embed from the cache one ``open`` per video, most of its
time. A pack holds the entries of one write batch (or of a compaction) field by field: for each
array field, the rows of every entry concatenated along axis 0, with an ``<field>.offsets``
array (n + 1 row offsets) and an ``<field>.present`` mask (``None`` fields: a video without
audio). It is a plain safetensors file (inspectable with the usual tools); the
per-entry metadata, the content hashes in entry order and a sha256 of the tensors' bytes live in
its header. Each field also has a ``<field>.sha256`` array: the sha256 of every entry's rows
of that field, so one entry can be read and verified alone (``explain=moments`` reads ~10
entries of as many packs per request; a compacted pack holds 64 MB). A pack is written once
under a temporary name, fsynced and renamed (then the directory fsynced) before any row points
at it, and never modified: compaction writes new packs and deletes old ones only once no row
names them.

Opening a pack reads its header and index columns (offsets, presence, entry checksums), each
verified against its column checksum. An entry is then read with one ``pread`` per field and
checked against its own sha256 at every read, or, when most of a pack is wanted (a re-embed),
as views into whole columns read and verified once. Packs of older releases have no entry
checksums: their columns are always read whole. A column or an entry that fails its checksum
or its structure raises :class:`FeatureError` (its entries are misses, recomputed and
re-cached elsewhere by the caller).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from recsys.durable import ensure_dir, fsync_dir
from recsys.features.base import FeatureError, VideoFeatures
from recsys.features.part import Part

FORMAT = "recsys-feature-pack/1"
SUFFIX = ".safetensors"
#: Entry kinds: a whole :class:`VideoFeatures`, or one modality :class:`Part` of a composite spec.
VIDEO, PART = "video", "part"
VIDEO_FIELDS = ("visual", "visual_seq", "audio", "audio_seq")
PART_FIELDS = ("seq",)
#: Suffix of a field's per-entry sha256 array (absent from packs of older releases).
DIGESTS = "sha256"
#: Below this share of a pack's entries, a read fetches each entry alone (one ``pread`` per
#: field, checked against its own sha256); above it, whole columns (read and checked once).
WHOLE_COLUMNS_SHARE = 0.25

_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "U16": np.uint16,
    "U32": np.uint32,
    "U64": np.uint64,
    "BOOL": np.bool_,
}
_NAMES = {np.dtype(v): k for k, v in _DTYPES.items()}

Entry = VideoFeatures | Part


def _fields(kind: str) -> tuple[str, ...]:
    return VIDEO_FIELDS if kind == VIDEO else PART_FIELDS


def _entry_arrays(kind: str, entry: Entry) -> tuple[dict[str, np.ndarray | None], dict[str, Any]]:
    """The array fields and the JSON metadata of one entry."""
    if kind == VIDEO:
        assert isinstance(entry, VideoFeatures)
        arrays = {name: getattr(entry, name) for name in VIDEO_FIELDS}
        meta = {
            "extractor": entry.extractor,
            "extractor_version": entry.extractor_version,
            "info": entry.info,
        }
        return arrays, meta
    assert isinstance(entry, Part)
    return {"seq": entry.seq}, {"info": entry.info}


def _entry_digests(column: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """(n, 32) uint8: the sha256 of each entry's rows of ``column`` (an absent entry: of none)."""
    data = column.data.cast("B")
    width = column.itemsize * int(np.prod(column.shape[1:], dtype=np.int64))
    bounds = (offsets * width).tolist()
    digests = [hashlib.sha256(data[a:b]).digest() for a, b in pairwise(bounds)]
    return np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(len(digests), 32).copy()


def encode_pack(kind: str, hashes: Sequence[str], entries: Sequence[Entry]) -> bytes:
    """The bytes of a pack holding ``entries`` (keyed by ``hashes``, in that order).

    Every entry must give a field the same dtype and trailing shape (one extractor version
    does); FeatureError otherwise.
    """
    if len(hashes) != len(entries) or not entries:
        raise FeatureError(f"a pack needs one hash per entry, got {len(hashes)}/{len(entries)}")
    tensors: dict[str, np.ndarray] = {}
    metas = []
    columns: dict[str, list[np.ndarray | None]] = {name: [] for name in _fields(kind)}
    for entry in entries:
        arrays, meta = _entry_arrays(kind, entry)
        metas.append(meta)
        for name, array in arrays.items():
            columns[name].append(array)
    for name, values in columns.items():
        present = np.array([v is not None for v in values], dtype=np.uint8)
        kept = [np.asarray(v) for v in values if v is not None]
        rows = np.array([0] + [a.shape[0] if a.ndim else 1 for a in kept], dtype=np.int64)
        offsets = np.zeros(len(values) + 1, dtype=np.int64)
        offsets[1:][present.astype(bool)] = rows[1:]
        np.cumsum(offsets, out=offsets)
        if kept:
            shapes = {(a.dtype.str, a.shape[1:]) for a in kept}
            if len(shapes) != 1:
                raise FeatureError(f"pack field {name} mixes dtypes or shapes: {sorted(shapes)}")
            data = np.concatenate([a.reshape(-1, *a.shape[1:]) for a in kept])
        else:
            data = np.zeros((0,), dtype=np.float32)
        if data.dtype not in _NAMES:
            raise FeatureError(f"pack field {name} has unsupported dtype {data.dtype}")
        tensors[name] = np.ascontiguousarray(data)
        tensors[f"{name}.offsets"] = offsets
        tensors[f"{name}.present"] = present
        tensors[f"{name}.{DIGESTS}"] = _entry_digests(tensors[name], offsets)
    distinct: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    index = []
    for meta in metas:
        text = json.dumps(meta, sort_keys=True)
        if text not in seen:
            seen[text] = len(distinct)
            distinct.append(meta)
        index.append(seen[text])
    metadata = {
        "format": FORMAT,
        "kind": kind,
        "hashes": json.dumps(list(hashes)),
        # Entries of one batch mostly share their metadata: each distinct one is parsed once.
        "meta": json.dumps(distinct),
        "meta_index": json.dumps(index),
        "sha256": json.dumps(
            {
                name: hashlib.sha256(array.data.cast("B")).hexdigest()
                for name, array in tensors.items()
            }
        ),
    }
    return _serialize(tensors, metadata)


def _serialize(tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> bytes:
    """safetensors layout: 8-byte header length, JSON header, then the tensors' bytes."""
    header: dict[str, Any] = {"__metadata__": metadata}
    chunks: list[bytes | memoryview] = []
    offset = 0
    for name in sorted(tensors):
        array = tensors[name]
        size = array.nbytes
        header[name] = {
            "dtype": _NAMES[array.dtype],
            "shape": list(array.shape),
            "data_offsets": [offset, offset + size],
        }
        chunks.append(array.data.cast("B"))
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # keeps the data 8-byte aligned, as safetensors does
    return b"".join([struct.pack("<Q", len(text)), text, *chunks])


#: Fields a whole-video entry needs eagerly; the sequences can wait (``lazy`` reads).
POOLED = ("visual", "audio")


@dataclass
class _Tensor:
    dtype: np.dtype[Any]
    shape: tuple[int, ...]
    begin: int
    end: int
    sha256: str
    row_bytes: int = 0  # bytes of one row (one step of axis 0)

    def __post_init__(self) -> None:
        self.row_bytes = self.dtype.itemsize * int(np.prod(self.shape[1:], dtype=np.int64))


class Pack:
    """A pack's header and index columns, and the data columns read so far, each verified
    against its checksum when read; entries are read alone (checked against their own sha256)
    or are views into whole columns (no copy)."""

    def __init__(
        self,
        path: Path,
        kind: str,
        hashes: list[str],
        metas: list[dict[str, Any]],
        layout: dict[str, _Tensor],
    ) -> None:
        self.path = path
        self.kind = kind
        self.hashes = hashes
        self.metas = metas
        self.layout = layout
        self.columns: dict[str, np.ndarray] = {}
        self._column_bytes = 0
        #: Whether each entry of each field has its own sha256 (packs of older releases: no).
        self.per_entry = all(f"{name}.{DIGESTS}" in layout for name in _fields(kind))
        # Per field: offsets and presence as Python lists (see :meth:`_positions`).
        self._at: dict[str, tuple[list[int], list[int]]] = {}
        # Per distinct metadata: the attributes every lazy entry of that metadata shares.
        self._shared: dict[int, dict[str, Any]] = {}

    def __len__(self) -> int:
        return len(self.hashes)

    @property
    def nbytes(self) -> int:
        """Bytes this pack holds in memory: its columns read so far, and about its header."""
        return self._column_bytes + 160 * len(self.hashes)

    def load(self, names: Sequence[str], buffer: bytes | None = None) -> None:
        """Read and verify the named columns (from ``buffer``, the whole file, if given)."""
        todo = [name for name in names if name not in self.columns]
        if not todo:
            return
        try:
            handle = None if buffer is not None else self.path.open("rb")
            try:
                for name in todo:
                    spec = self.layout[name]
                    if buffer is not None:
                        data: bytes | memoryview = memoryview(buffer)[spec.begin : spec.end]
                    else:
                        assert handle is not None
                        handle.seek(spec.begin)
                        data = handle.read(spec.end - spec.begin)
                    if len(data) != spec.end - spec.begin:
                        raise ValueError(f"tensor {name} is truncated")
                    if hashlib.sha256(data).hexdigest() != spec.sha256:
                        raise ValueError(f"tensor {name} fails its checksum")
                    column = np.frombuffer(data, dtype=spec.dtype).reshape(spec.shape)
                    if name not in self.columns:
                        self._column_bytes += column.nbytes
                    self.columns[name] = column
            finally:
                if handle is not None:
                    handle.close()
        except (OSError, ValueError) as error:
            raise FeatureError(
                f"feature pack {self.path} is damaged ({error}); recomputing"
            ) from error

    def _positions(self, name: str) -> tuple[list[int], list[int]]:
        """A field's offsets and presence as Python lists: made once per pack, they make an
        entry two list look-ups and a slice (numpy scalars cost more)."""
        held = self._at.get(name)
        if held is None:
            self.load((f"{name}.present", f"{name}.offsets"))
            columns = self.columns
            held = (columns[f"{name}.offsets"].tolist(), columns[f"{name}.present"].tolist())
            self._at[name] = held
        return held

    def _column(self, name: str) -> np.ndarray:
        column = self.columns.get(name)
        if column is None:
            self.load((name,))
            column = self.columns[name]
        return column

    def field(self, name: str, row: int, fd: int | None = None) -> np.ndarray | None:
        """Entry ``row`` of a field (None: absent): a view into its column when that is read,
        else (a pack with entry checksums) the entry's rows alone, read from ``fd`` (or the
        file) and verified."""
        offsets, present = self._positions(name)
        if not present[row]:
            return None
        begin, end = offsets[row], offsets[row + 1]
        column = self.columns.get(name)
        if column is None:
            if self.per_entry:
                return self._read_rows(name, row, begin, end, fd)
            column = self._column(name)
        return column[begin:end]

    def _read_rows(self, name: str, row: int, begin: int, end: int, fd: int | None) -> np.ndarray:
        """Rows ``begin:end`` of a field's column, checked against entry ``row``'s sha256."""
        spec = self.layout[name]
        width = spec.row_bytes
        start, size = spec.begin + begin * width, (end - begin) * width
        try:
            if fd is None:
                opened = os.open(self.path, os.O_RDONLY)
                try:
                    data = os.pread(opened, size, start)
                finally:
                    os.close(opened)
            else:
                data = os.pread(fd, size, start)
        except OSError as error:
            raise FeatureError(
                f"feature pack {self.path} cannot be read ({error}); recomputing"
            ) from error
        if len(data) != size:
            why = "is truncated"
        elif hashlib.sha256(data).digest() != self._column(f"{name}.{DIGESTS}")[row].tobytes():
            why = "fails its checksum"
        else:
            return np.frombuffer(data, dtype=spec.dtype).reshape(end - begin, *spec.shape[1:])
        raise FeatureError(
            f"feature pack {self.path} is damaged (entry {row} of {name} {why}); recomputing"
        )

    @contextmanager
    def _reading(self, count: int, names: Sequence[str]) -> Iterator[int | None]:
        """How ``count`` entries' fields ``names`` are read: an open file for one ``pread`` per
        entry and field (a few entries of a pack with entry checksums, or any number once a
        whole column fails its checksum), or None once the whole columns are read and verified
        (most of a pack, or a pack without entry checksums)."""
        whole = (
            not self.per_entry
            or count >= WHOLE_COLUMNS_SHARE * len(self.hashes)
            or all(name in self.columns for name in names)  # read whole already
        )
        if whole:
            try:
                self.load(names)
            except FeatureError:
                if not self.per_entry:
                    raise
                whole = False  # entry by entry: only the damaged entries are misses
        if whole:
            yield None
            return
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError as error:
            raise FeatureError(
                f"feature pack {self.path} cannot be read ({error}); recomputing"
            ) from error
        try:
            yield fd
        finally:
            os.close(fd)

    def entries(
        self, members: Sequence[tuple[int, str]], *, lazy: bool = False
    ) -> tuple[list[tuple[str, Entry]], FeatureError | None]:
        """``(hash, entry)`` of many ``(row, hash)`` members (``lazy``: whole-video entries whose
        sequences are read on first use). Members that fail are left out; the first failure
        comes back with the entries (a caller warns once per pack, not once per entry)."""
        if lazy and self.kind == VIDEO:
            return self._lazy_entries(members)
        out: list[tuple[str, Entry]] = []
        error: FeatureError | None = None
        try:
            with self._reading(len(members), _fields(self.kind)) as fd:
                for row, content_hash in members:
                    try:
                        out.append((content_hash, self._entry(row, content_hash, fd)))
                    except FeatureError as failed:
                        error = error or failed
        except FeatureError as failed:  # the file cannot be opened, or a column is damaged
            error = error or failed
        return out, error

    def _lazy_entries(
        self, members: Sequence[tuple[int, str]]
    ) -> tuple[list[tuple[str, Entry]], FeatureError | None]:
        """Whole-video entries whose sequences stay in the pack, made in one loop (a re-embed
        makes one per video: the field look-ups and shared attributes are hoisted out). A few
        entries of a pack with entry checksums keep their pooled vectors there too (read alone
        on first use); otherwise the pooled columns are read whole."""
        hashes = self.hashes
        metas = self.metas
        alone = self.per_entry and len(members) < WHOLE_COLUMNS_SHARE * len(hashes)
        try:
            visual = None if alone else self._column("visual")
            audio = None if alone else self._column("audio")
            visual_at, has_visual = self._positions("visual")
            audio_at, has_audio = self._positions("audio")
        except FeatureError as damaged:
            return [], damaged
        shared = self._shared
        new = LazyVideoFeatures.__new__
        out: list[tuple[str, Entry]] = []
        error: FeatureError | None = None
        for row, content_hash in members:
            if not 0 <= row < len(hashes) or hashes[row] != content_hash or not has_visual[row]:
                error = error or self._missing(row, content_hash)
                continue
            meta = metas[row]
            attributes = shared.get(id(meta))
            if attributes is None:
                attributes = shared[id(meta)] = LazyVideoFeatures.shared(self, meta)
            entry = new(LazyVideoFeatures)
            values = entry.__dict__
            values.update(attributes)
            if visual is not None and audio is not None:
                values["visual"] = visual[visual_at[row] : visual_at[row + 1]]
                values["audio"] = (
                    audio[audio_at[row] : audio_at[row + 1]] if has_audio[row] else None
                )
            values["_row"] = row
            out.append((content_hash, entry))
        return out, error

    def _missing(self, row: int, content_hash: str) -> FeatureError:
        if not 0 <= row < len(self.hashes) or self.hashes[row] != content_hash:
            return FeatureError(
                f"feature pack {self.path} has no entry {row} for {content_hash}; recomputing"
            )
        return FeatureError(f"feature pack {self.path} entry {row} has no visual features")

    def entry(self, row: int, content_hash: str, *, lazy: bool = False) -> Entry:
        """Entry ``row``, which must be ``content_hash``'s (FeatureError otherwise). ``lazy``:
        a whole-video entry whose sequences are read (and verified) on first use."""
        found, error = self.entries([(row, content_hash)], lazy=lazy)
        if not found:
            raise error or self._missing(row, content_hash)
        return found[0][1]

    def _entry(self, row: int, content_hash: str, fd: int | None) -> Entry:
        """Entry ``row`` read whole (see :meth:`field` for ``fd``)."""
        if not 0 <= row < len(self.hashes) or self.hashes[row] != content_hash:
            raise self._missing(row, content_hash)
        meta = self.metas[row]
        if self.kind == PART:
            return Part(self.field("seq", row, fd), meta.get("info", {}))
        visual = self.field("visual", row, fd)
        visual_seq = None if visual is None else self.field("visual_seq", row, fd)
        if visual is None or visual_seq is None:
            raise FeatureError(f"feature pack {self.path} entry {row} has no visual features")
        return VideoFeatures(
            extractor=meta["extractor"],
            extractor_version=meta["extractor_version"],
            visual=visual,
            visual_seq=visual_seq,
            audio=self.field("audio", row, fd),
            audio_seq=self.field("audio_seq", row, fd),
            info=meta.get("info", {}),
        )


class _Lazy:
    """A field read from the entry's pack on first access (then kept)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        if obj is None:
            return self
        values = obj.__dict__
        if self.name not in values:
            pack: Pack = values["_pack"]
            values[self.name] = pack.field(self.name, values["_row"])
            if self.name.startswith("visual") and values[self.name] is None:
                raise FeatureError(f"feature pack {pack.path} entry has no {self.name}")
        return values[self.name]

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self.name] = value


class LazyVideoFeatures(VideoFeatures):
    """:class:`VideoFeatures` whose per-segment sequences (and, for a few entries of a pack
    with entry checksums, pooled vectors) stay in the pack until used.

    Stage B of a vector model reads only the pooled vectors: a re-embed then reads a fifth of
    the bytes; matched moments read only the sequences. A field that turns out damaged raises
    FeatureError where it is first used; pickling (the Ray engine) hands over plain
    VideoFeatures.
    """

    visual = _Lazy("visual")  # type: ignore[assignment]
    audio = _Lazy("audio")  # type: ignore[assignment]
    visual_seq = _Lazy("visual_seq")  # type: ignore[assignment]
    audio_seq = _Lazy("audio_seq")  # type: ignore[assignment]

    @classmethod
    def of(
        cls,
        pack: Pack,
        row: int,
        meta: dict[str, Any],
        visual: np.ndarray,
        audio: np.ndarray | None,
    ) -> LazyVideoFeatures:
        self = cls.__new__(cls)
        self.__dict__.update(cls.shared(pack, meta), visual=visual, audio=audio, _row=row)
        return self

    @staticmethod
    def shared(pack: Pack, meta: dict[str, Any]) -> dict[str, Any]:
        """The attributes of the entries of ``pack`` that have the metadata ``meta``."""
        return {
            "extractor": meta["extractor"],
            "extractor_version": meta["extractor_version"],
            "info": meta.get("info", {}),
            "parts": None,
            "_pack": pack,
        }

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            VideoFeatures,
            (
                self.extractor,
                self.extractor_version,
                self.visual,
                self.visual_seq,
                self.audio,
                self.audio_seq,
                self.info,
            ),
        )


def read_pack(path: Path, *, lazy: bool = False) -> Pack:
    """Open a pack: its header and index columns, and its data columns, verified. ``lazy``
    reads no data column of a pack with entry checksums (entries are read as they are asked
    for), and only the pooled ones of an older whole-video pack. FileNotFoundError if the file
    is gone, FeatureError if it is damaged."""
    try:
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            head = handle.read(8)
            (length,) = struct.unpack("<Q", head)
            if length > size:
                raise ValueError("header runs past the end of the file")
            header = json.loads(handle.read(length))
            metadata = header.pop("__metadata__")
            if metadata.get("format") != FORMAT:
                raise ValueError(f"not a feature pack ({metadata.get('format')!r})")
            checksums = json.loads(metadata["sha256"])
            start = 8 + length
            layout: dict[str, _Tensor] = {}
            for name, spec in header.items():
                begin, end = (start + int(x) for x in spec["data_offsets"])
                if end > size or begin > end:
                    raise ValueError(f"tensor {name} runs past the end of the file")
                layout[name] = _Tensor(
                    np.dtype(_DTYPES[spec["dtype"]]),
                    tuple(int(x) for x in spec["shape"]),
                    begin,
                    end,
                    checksums[name],
                )
            kind = metadata["kind"]
            hashes = json.loads(metadata["hashes"])
            distinct = json.loads(metadata["meta"])
            metas = [distinct[i] for i in json.loads(metadata["meta_index"])]
            per_entry = all(f"{name}.{DIGESTS}" in layout for name in _fields(kind))
            buffer = None
            if not lazy or (kind == PART and not per_entry):
                handle.seek(0)
                buffer = handle.read()
    except FileNotFoundError:
        raise
    except (OSError, struct.error, KeyError, ValueError, TypeError, UnicodeDecodeError) as error:
        raise FeatureError(f"feature pack {path} is damaged ({error}); recomputing") from error
    pack = Pack(path, kind, hashes, metas, layout)
    fields = _fields(kind)
    suffixes = ("offsets", "present", DIGESTS) if pack.per_entry else ("offsets", "present")
    index = [f"{name}.{suffix}" for name in fields for suffix in suffixes]
    if not lazy:
        data = list(fields)
    elif pack.per_entry:
        data = []
    else:
        data = list(POOLED) if kind == VIDEO else list(fields)
    pack.load(index + data, buffer)
    n = len(hashes)
    for name in fields:
        offsets = pack.columns[f"{name}.offsets"]
        if (
            len(metas) != n
            or offsets.shape != (n + 1,)
            or pack.columns[f"{name}.present"].shape != (n,)
            or offsets[0] != 0
            or offsets[-1] != layout[name].shape[0]
            or (n and bool(np.any(np.diff(offsets) < 0)))
            or (pack.per_entry and pack.columns[f"{name}.{DIGESTS}"].shape != (n, 32))
        ):
            raise FeatureError(f"feature pack {path} is damaged (field {name}); recomputing")
    return pack


def write_pack(directory: Path, kind: str, hashes: Sequence[str], entries: Sequence[Entry]) -> Path:
    """Write a pack durably (temporary name, fsync, rename, directory fsync); its path.

    Only after this returns may a row name the pack: a write killed halfway leaves at most a
    temporary file, which compaction removes once it is old enough.
    """
    data = encode_pack(kind, hashes, entries)
    directory = ensure_dir(directory)
    name = uuid.uuid4().hex
    final = directory / f"{name}{SUFFIX}"
    tmp = directory / f".{name}.tmp"
    try:
        with tmp.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(directory)
    return final


def pack_hashes(path: Path) -> list[str]:
    """The content hashes of a pack, from its header alone (no checksum: a reader of an entry
    still verifies what it reads)."""
    with path.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
    hashes: list[str] = json.loads(header["__metadata__"]["hashes"])
    return hashes
