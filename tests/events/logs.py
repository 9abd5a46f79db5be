"""Hand-made watch logs: rows of (user, video, timestamp[, watch_seconds]) written as CSV or
Parquet, and catalog rows for the videos they name."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from recsys.db import Database
from recsys.db.models import RelatedPair, Video
from recsys.synth.events import write_parquet

T0 = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
Row = tuple[object, ...]


def at(minutes: float) -> str:
    """ISO 8601 time ``minutes`` after T0."""
    return (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def epoch(minutes: float) -> int:
    return int((T0 + timedelta(minutes=minutes)).timestamp())


def write_csv(path: Path, rows: Sequence[Row], header: Sequence[str] | None = None) -> Path:
    header = header or ["user_id", "video_id", "timestamp", "watch_seconds"][: len(rows[0])]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_events_parquet(path: Path, rows: Sequence[Row]) -> Path:
    """user_id, video_id as text, timestamp as a Parquet timestamp, watch_seconds a double."""
    micros = [
        int(datetime.fromisoformat(str(r[2]).replace("Z", "+00:00")).timestamp() * 1e6)
        for r in rows
    ]
    write_parquet(
        {
            "user_id": np.array([str(r[0]) for r in rows], dtype=object),
            "video_id": np.array([str(r[1]) for r in rows], dtype=object),
            "t": np.array(micros, dtype=np.int64),
            "w": np.array([float(r[3]) if len(r) > 3 else np.nan for r in rows]),
        },
        "user_id, video_id, make_timestamp(t) AS timestamp, "
        "CASE WHEN isnan(w) THEN NULL ELSE w END AS watch_seconds",
        path,
    )
    return path


def add_videos(database: Database, ids: Sequence[str]) -> None:
    with database.session() as session:
        for video_id in ids:
            session.add(Video(video_id=video_id, uri=f"/media/{video_id}.mp4"))


def stored_pairs(database: Database, source: str = "events") -> dict[tuple[str, str], float]:
    """{(video_a, video_b): weight} of ``source`` in related_pairs, external ids, a < b."""
    with database.session() as session:
        names = {v.id: v.video_id for v in session.query(Video)}
        rows = session.query(RelatedPair).filter(RelatedPair.source == source).all()
        out: dict[tuple[str, str], float] = {}
        for pair in rows:
            a, b = sorted((names[pair.video_a], names[pair.video_b]))
            out[(a, b)] = pair.weight
        return out


def pair_rows(database: Database, source: str = "events") -> list[tuple[int, int, int, float]]:
    """(row id, key a, key b, weight) of ``source``: the identity of every stored row."""
    with database.session() as session:
        return sorted(
            (p.id, p.video_a, p.video_b, p.weight)
            for p in session.query(RelatedPair).filter(RelatedPair.source == source)
        )
