"""Loading related (co-watch) pairs from ``video_a,video_b[,weight][,source]`` CSV files."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from recsys.db import Database
from recsys.db.models import RelatedPair, Video
from recsys.ingest.csv_files import UnreadableCsv, has_surrogates, open_csv
from recsys.settings import Settings


@dataclass
class RelatedReport:
    source: str
    pairs: int = 0  # distinct pairs written (inserted or replaced)
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rows: int = 0
    unknown_ids: list[str] = field(default_factory=list)
    self_pairs: int = 0
    bad_rows: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.bad_rows and not self.unknown_ids

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _related_rows(path: Path, report: RelatedReport) -> Iterator[tuple[str, str, float, str]]:
    try:
        reader, header = open_csv(path)
    except UnreadableCsv as error:
        report.bad_rows.append(f"{path}: {error}")
        return
    missing = [c for c in ("video_a", "video_b") if c not in header]
    if missing:
        shown = ", ".join(header) if header else "none (empty file)"
        report.bad_rows.append(f"{path}: missing column(s) {', '.join(missing)} (columns: {shown})")
        return
    try:
        for row in reader:
            pair = _related_pair(row, f"{path} row {reader.line_num}", report)
            if pair is not None:
                yield pair
    except csv.Error as error:
        report.bad_rows.append(f"{path} row {reader.line_num}: CSV syntax error: {error}")


def _related_pair(
    row: dict[str, str], where: str, report: RelatedReport
) -> tuple[str, str, float, str] | None:
    """One co-watch row checked, or None with the reason recorded."""
    report.rows += 1
    a = (row.get("video_a") or "").strip()
    b = (row.get("video_b") or "").strip()
    if has_surrogates(a + b + (row.get("weight") or "") + (row.get("source") or "")):
        report.bad_rows.append(f"{where}: not valid UTF-8 text")
        return None
    if not a or not b:
        report.bad_rows.append(f"{where}: empty video_a or video_b")
        return None
    raw_weight = (row.get("weight") or "").strip()
    try:
        weight = float(raw_weight) if raw_weight else 1.0
    except ValueError:
        report.bad_rows.append(f"{where}: weight {raw_weight!r} is not a number")
        return None
    if not np.isfinite(weight) or weight <= 0:
        report.bad_rows.append(f"{where}: weight must be a positive number, got {weight}")
        return None
    return a, b, weight, (row.get("source") or "").strip() or report.source


#: Rows per bulk INSERT / UPDATE statement.
BULK_ROWS = 5000


def _upsert(
    session: Session,
    totals: dict[tuple[int, int, str], float],
    source: str,
    report: RelatedReport,
) -> None:
    """Insert new pairs and update changed weights in bulk (executemany, no ORM objects)."""
    sources = sorted({k[2] for k in totals}) or [source]
    existing = {
        (a, b, s): (pair_id, weight)
        for pair_id, a, b, s, weight in session.execute(
            select(
                RelatedPair.id,
                RelatedPair.video_a,
                RelatedPair.video_b,
                RelatedPair.source,
                RelatedPair.weight,
            ).where(RelatedPair.source.in_(sources))
        )
    }
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for key, weight in sorted(totals.items()):
        found = existing.get(key)
        if found is None:
            inserts.append(
                {"video_a": key[0], "video_b": key[1], "source": key[2], "weight": weight}
            )
        elif found[1] != weight:
            updates.append({"id": found[0], "weight": weight})
        else:
            report.unchanged += 1
    for start in range(0, len(inserts), BULK_ROWS):
        session.execute(insert(RelatedPair), inserts[start : start + BULK_ROWS])
    for start in range(0, len(updates), BULK_ROWS):
        session.execute(update(RelatedPair), updates[start : start + BULK_ROWS])
    report.inserted, report.updated = len(inserts), len(updates)


def load_related(
    settings: Settings, database: Database, csv_path: str | Path, source: str = "cowatch"
) -> RelatedReport:
    """Load ``video_a,video_b[,weight][,source]`` pairs (external video ids).

    Pairs are undirected: (a, b) and (b, a) are one pair. Repeated rows inside the file are
    summed; the file's total then *replaces* the stored weight of that (pair, source), so
    loading the same file twice changes nothing. Unknown ids and bad rows are reported.
    """
    del settings  # kept for a uniform library signature
    path = Path(csv_path)
    report = RelatedReport(source=source)
    if not path.is_file():
        report.bad_rows.append(f"{path}: file not found")
        return report
    rows = list(_related_rows(path, report))
    external = sorted({a for a, _, _, _ in rows} | {b for _, b, _, _ in rows})
    with database.session() as session:
        ids: dict[str, int] = {}
        for start in range(0, len(external), 500):
            chunk = external[start : start + 500]
            for video_id, internal in session.execute(
                select(Video.video_id, Video.id).where(Video.video_id.in_(chunk))
            ):
                ids[video_id] = internal
        report.unknown_ids = [v for v in external if v not in ids]
        totals: dict[tuple[int, int, str], float] = {}
        for a, b, weight, pair_source in rows:
            if a not in ids or b not in ids:
                continue
            ia, ib = ids[a], ids[b]
            if ia == ib:
                report.self_pairs += 1
                continue
            key = (min(ia, ib), max(ia, ib), pair_source)
            totals[key] = totals.get(key, 0.0) + weight
        _upsert(session, totals, source, report)
        report.pairs = len(totals)
    return report
