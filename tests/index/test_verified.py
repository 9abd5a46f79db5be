"""A published index file is hashed once, not by every API worker that starts; any
change to the file after that is still refused."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

import index.verified as verified
import recsys.file_lock as file_lock
from index import BuildOptions, IndexLoadError, build_index, load_index
from index.manifest import INDEX_FILE
from recsys.checksums import sha256_file
from recsys.db import Database
from recsys.settings import Settings
from tests.index.catalog import make_catalog
from tests.processes import run_together


@pytest.fixture
def published(settings: Settings, database: Database) -> Path:
    make_catalog(settings, database, 400, 32)
    result = build_index(settings, database, BuildOptions(gpu="off", publish=False))
    assert result.directory is not None
    return result.directory


@pytest.fixture
def hashes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files index loading hashes, in order."""
    seen: list[str] = []

    def counting(path: str | Path) -> str:
        seen.append(Path(path).name)
        return sha256_file(path)

    monkeypatch.setattr(verified, "sha256_file", counting)
    return seen


def test_the_first_load_hashes_and_later_loads_trust_the_stamp(
    published: Path, hashes: list[str]
) -> None:
    first = load_index(published, mmap=True)
    assert INDEX_FILE in hashes
    assert verified.stamp_path(published / INDEX_FILE).is_file()
    hashes.clear()
    second = load_index(published, mmap=True)
    assert hashes == []
    assert second.ntotal == first.ntotal == 400


def test_always_hashes_at_every_load(published: Path, hashes: list[str]) -> None:
    load_index(published)
    hashes.clear()
    load_index(published, verify="always")
    load_index(published, verify="always")
    assert hashes.count(INDEX_FILE) == 2


def test_a_file_changed_after_its_stamp_is_refused(published: Path) -> None:
    load_index(published)  # stamped
    path = published / INDEX_FILE
    before = path.stat()
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 8] = bytes(b ^ 0xFF for b in data[middle : middle + 8])
    with path.open("r+b") as handle:  # in place: same inode, same size
        handle.write(bytes(data))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # even with mtime put back
    with pytest.raises(IndexLoadError, match="checksum"):
        load_index(published)


def test_a_damaged_stamp_is_ignored(published: Path, hashes: list[str]) -> None:
    load_index(published)
    verified.stamp_path(published / INDEX_FILE).write_text("{not json")
    hashes.clear()
    load_index(published)
    assert hashes.count(INDEX_FILE) == 1


def test_without_a_writable_directory_every_load_hashes(
    published: Path, hashes: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = os.open

    def read_only(path: str | os.PathLike[str], flags: int, *args: int) -> int:
        if str(path).endswith(verified.LOCK_SUFFIX):
            raise PermissionError(13, "Read-only file system", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(file_lock.os, "open", read_only)
    load_index(published)
    load_index(published)
    assert hashes.count(INDEX_FILE) == 2
    assert not verified.stamp_path(published / INDEX_FILE).exists()


def _slow_verify(path: str, expected: str, log: str) -> None:
    def slow(target: str | Path) -> str:
        with open(log, "a") as handle:
            handle.write("hash\n")
        time.sleep(0.5)
        return sha256_file(target)

    verified.sha256_file = slow  # type: ignore[assignment] # this child process only
    assert verified.verified_sha256(Path(path), expected) == expected


def test_workers_starting_together_hash_once(published: Path, tmp_path: Path) -> None:
    path = published / INDEX_FILE
    log = tmp_path / "hashes.log"
    assert run_together(_slow_verify, (str(path), sha256_file(path), str(log))) == [0, 0, 0]
    assert log.read_text().count("hash") == 1
