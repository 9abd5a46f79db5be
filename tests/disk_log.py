"""A record of fsyncs, renames and database commits, in order, for durability tests.

:func:`record_disk_ops` wraps ``os.fsync`` and ``os.replace`` (the real calls still happen) and
listens for session commits; tests then assert that a file or directory was synced under its
temporary name before the rename that publishes it, that its parent directory was synced after
the rename, and that both happened before the commit of the row that names it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session


def _real(path: str | Path) -> str:
    return os.path.realpath(path)


@dataclass
class DiskLog:
    events: list[tuple[str, ...]] = field(default_factory=list)

    def position(self, *wanted: str, after: int = -1) -> int:
        """Index of the first event equal to ``wanted`` after position ``after``."""
        for i, item in enumerate(self.events):
            if i > after and item == wanted:
                return i
        raise AssertionError(f"no {wanted} after position {after} in {self.events}")

    def replace_into(self, final: Path | str) -> tuple[int, str]:
        """(position, source) of the rename that put ``final`` in place."""
        target = _real(final)
        for i, item in enumerate(self.events):
            if item[0] == "replace" and item[2] == target:
                return i, item[1]
        raise AssertionError(f"{final} was never renamed into place: {self.events}")

    def assert_published_durably(self, final: Path | str) -> int:
        """``final`` was synced under its temporary name before its rename and its directory
        after it; returns the position of that directory sync."""
        renamed, source = self.replace_into(final)
        synced = self.position("fsync", source)
        assert synced < renamed, f"{source} was synced only after its rename to {final}"
        return self.position("fsync", _real(Path(final).parent), after=renamed)

    def assert_committed_after(self, position: int, renamed: Path | str) -> None:
        """The first commit after ``renamed`` was put in place comes after event ``position``."""
        after, _ = self.replace_into(renamed)
        commit = self.position("commit", after=after)
        assert position < commit, f"committed before the sync at {position}: {self.events}"


@contextmanager
def record_disk_ops(monkeypatch: pytest.MonkeyPatch) -> Iterator[DiskLog]:
    """Record while the block runs (the patches are undone when the test ends)."""
    log = DiskLog()
    fsync, replace = os.fsync, os.replace

    def logged_fsync(fd: int) -> None:
        log.events.append(("fsync", _real(f"/proc/self/fd/{fd}")))
        fsync(fd)

    def logged_replace(src, dst, *args, **kwargs):  # type: ignore[no-untyped-def]
        log.events.append(("replace", _real(src), _real(dst)))
        return replace(src, dst, *args, **kwargs)

    def logged_commit(_session: Session) -> None:
        log.events.append(("commit",))

    monkeypatch.setattr(os, "fsync", logged_fsync)
    monkeypatch.setattr(os, "replace", logged_replace)
    event.listen(Session, "before_commit", logged_commit)
    try:
        yield log
    finally:
        event.remove(Session, "before_commit", logged_commit)
        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "replace", replace)
