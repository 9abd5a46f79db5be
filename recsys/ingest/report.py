"""The outcome of ingesting videos: one :class:`IngestItem` per video or failed row."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class Outcome(StrEnum):
    """What ingesting one item did (a string: compares and serialises as its value)."""

    ADDED = "added"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    STALE = "stale"
    FAILED = "failed"
    SKIPPED = "skipped"
    ALIAS = "alias"  # the content of a registered video under another path: recorded as such


ADDED, UPDATED, UNCHANGED, STALE, FAILED, SKIPPED, ALIAS = Outcome


@dataclass
class IngestItem:
    source: str
    video_id: str | None
    outcome: str
    reason: str | None = None


@dataclass
class IngestReport:
    items: list[IngestItem] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        result: dict[str, int] = {k: 0 for k in Outcome}
        for item in self.items:
            result[item.outcome] += 1
        return result

    @property
    def failures(self) -> list[IngestItem]:
        return [i for i in self.items if i.outcome == Outcome.FAILED]

    @property
    def ok(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict[str, Any]:
        return {"counts": self.counts(), "items": [asdict(i) for i in self.items]}
