"""Where the feature cache keeps its files, and finding a cached part without the database.

Under the features folder each (extractor, version) key has a folder ``<extractor>/<version>``
(slugged). Its entries lie in packs (:mod:`.packs`), ``<key>/packs/<uuid>.safetensors``; caches
written by older releases hold one file per entry, ``<key>/<hash[:2]>/<hash>.safetensors``,
which still read. The ``feature_cache`` rows name these paths relative to the features folder.

Stage-A workers have no database: :func:`cached_parts` finds the parts of a visual + audio spec
already on disk (rows or not: files are written atomically), so a worker whose audio encoder
changed reuses every cached visual part instead of decoding for it.
"""

from __future__ import annotations

import re
from pathlib import Path

from recsys.features.base import FeatureError
from recsys.features.cache.packs import SUFFIX, pack_hashes, read_pack
from recsys.features.composite import MODALITIES, CompositeExtractor
from recsys.features.part import Part

#: Folder of a key's packs, beside the one-file-per-entry ``<hash[:2]>`` folders of older caches.
PACK_DIR = "packs"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def key_dir(name: str, version: str) -> Path:
    """Folder of one (extractor, version) key relative to the features folder."""
    return Path(_slug(name)) / _slug(version)


def pack_dir(name: str, version: str) -> Path:
    """Folder of one key's packs relative to the features folder."""
    return key_dir(name, version) / PACK_DIR


def entry_path(content_hash: str, name: str, version: str) -> Path:
    """Path of a one-file entry (the layout of older caches) relative to the features folder."""
    return key_dir(name, version) / content_hash[:2] / f"{content_hash}.safetensors"


class _DiskIndex:
    """Where each hash of one key lies on disk (pack and row), from the packs' headers.

    The headers of packs seen once are remembered; new packs are read as they appear.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.seen: dict[str, list[str]] = {}
        self.where: dict[str, tuple[str, int]] = {}

    def find(self, content_hash: str) -> tuple[Path, int] | None:
        try:
            names = {p.name for p in self.directory.iterdir() if p.suffix == SUFFIX}
        except FileNotFoundError:
            return None
        if names != set(self.seen):
            for gone in set(self.seen) - names:
                del self.seen[gone]
            for name in sorted(names - set(self.seen)):
                try:
                    self.seen[name] = pack_hashes(self.directory / name)
                except (OSError, ValueError, KeyError):
                    self.seen[name] = []
            self.where = {
                h: (n, i) for n, hashes in self.seen.items() for i, h in enumerate(hashes)
            }
        found = self.where.get(content_hash)
        return None if found is None else (self.directory / found[0], found[1])


_DISK_INDEXES: dict[Path, _DiskIndex] = {}


def find_part_on_disk(root: Path, name: str, version: str, content_hash: str) -> Part | None:
    """A cached part of one key found on disk (rows or not: files are written atomically),
    in a one-file entry or a pack; None when absent or unreadable."""
    path = root / entry_path(content_hash, name, version)
    if path.is_file():
        try:
            return Part.load(path)
        except FeatureError:
            pass
    directory = root / pack_dir(name, version)
    index = _DISK_INDEXES.setdefault(directory, _DiskIndex(directory))
    found = index.find(content_hash)
    if found is None:
        return None
    try:
        entry = read_pack(found[0]).entry(found[1], content_hash)
    except (OSError, FeatureError):
        return None
    return entry if isinstance(entry, Part) else None


def cached_parts(root: Path, extractor: CompositeExtractor, content_hash: str) -> dict[str, Part]:
    """The parts of ``content_hash`` under the features folder ``root``, by modality (the
    modalities absent from the result are still to be computed)."""
    found = {}
    for modality in MODALITIES:
        part = find_part_on_disk(root, *extractor.keys[modality], content_hash)
        if part is not None:
            found[modality] = part
    return found
