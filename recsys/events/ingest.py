"""``ingest_events``: watch-event files -> the aggregate store -> ``related_pairs``.

One call adds each file to the source's aggregate store (:mod:`recsys.events.store`; a file
whose content was added before changes nothing), then *materialises* the related pairs: the
normalised, top-N co-watch graph of the whole history, restricted to the videos the catalog
has now, written to ``$RECSYS_HOME/events/<source>.pairs.csv`` and loaded into
``related_pairs`` under ``source`` through :func:`recsys.ingest.load_related` (the one upsert
path: the same pairs again leave every row unchanged). Pairs of that source that are no longer
in the graph are removed, so the source always holds exactly the latest graph.

Events of videos that are not in the catalog are counted, reported and kept in the store;
:func:`refresh_related` (run by ``recsys ingest`` after it registers new videos) materialises
again, and their pairs join then.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import aliased

from recsys.choices import Engine
from recsys.db import Database, RelatedPair, Video, VideoStatus
from recsys.events.options import EventOptions
from recsys.events.read import FileReport
from recsys.events.store import EventStore, events_dir, store_sources
from recsys.ingest import load_related
from recsys.ingest.discovery import is_hidden
from recsys.settings import Settings

log = logging.getLogger(__name__)

#: What a directory given as an event file is searched for (recursively).
EVENT_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")


@dataclass
class RelatedResult:
    """What materialising the graph did to ``related_pairs``."""

    source: str
    pairs: int = 0  # pairs of the graph (both videos in the catalog)
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0  # pairs of the source no longer in the graph
    pairs_file: str = ""
    unknown_videos: int = 0  # videos of the events that the catalog does not have (yet)
    unknown_events: int = 0
    unknown_examples: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass
class EventsReport:
    """The closing report of :func:`ingest_events`."""

    source: str
    store: str
    options: dict[str, Any]
    files: list[FileReport] = field(default_factory=list)
    recounted: bool = False  # the count options changed: the history was counted again
    stored: dict[str, int] = field(default_factory=dict)  # files, events, users, videos
    counts: dict[str, int] = field(default_factory=dict)  # baskets, users, events counted, caps
    cowatched_pairs: int = 0  # distinct pairs with c_ij > 0 (before support and top-N)
    related: RelatedResult | None = None

    @property
    def ok(self) -> bool:
        """No file failed and no row was refused (unknown videos are not failures)."""
        files_ok = all(f.status != "failed" and not f.problems for f in self.files)
        return files_ok and not (self.related and self.related.problems)

    def as_dict(self) -> dict[str, Any]:
        payload = asdict(self)
        payload["files"] = [f.as_dict() for f in self.files]
        payload["ok"] = self.ok
        return payload


def expand_event_paths(paths: Iterable[str | Path]) -> tuple[list[Path], list[FileReport]]:
    """Files as given, directories as their event files (sorted; hidden ones skipped, as a
    folder scan of videos does); problems for empty dirs."""
    files: list[Path] = []
    problems: list[FileReport] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and p.suffix.lower() in EVENT_SUFFIXES
                and not is_hidden(p.relative_to(path))
            )
            if not found:
                problems.append(
                    FileReport(
                        path=str(path),
                        status="failed",
                        error=f"no event files ({', '.join(EVENT_SUFFIXES)}) in this directory",
                    )
                )
            files.extend(found)
        else:
            files.append(path)
    return files, problems


def ingest_events(
    settings: Settings,
    database: Database,
    files: Sequence[str | Path],
    options: EventOptions | None = None,
) -> EventsReport:
    """Add watch-event files (CSV/Parquet, or directories of them) and refresh the pairs.

    Every file is reported (added / unchanged / failed, its rows, valid events, duplicates and
    each problem with a count and examples); the related pairs of ``options.source`` are then
    recomputed from the whole aggregate and written (see the module docstring).
    """
    options = options or EventOptions()
    paths, failures = expand_event_paths(files)
    with _engine(options), EventStore.open(settings, options.source) as store:
        report = EventsReport(
            source=options.source, store=str(store.path), options=options.as_dict()
        )
        report.files.extend(failures)
        report.recounted = store.ensure_counts(options)
        for result in store.add_files(paths, options):
            report.files.append(result)
            _log_file(result)
        report.related = _materialise(settings, database, store, options)
        report.stored = store.stats()
        report.counts = store.totals()
        report.cowatched_pairs = store._scalar("SELECT count(*) FROM pair_counts")
    return report


def _engine(options: EventOptions) -> AbstractContextManager[None]:
    """Ray up for the whole ingest with ``--engine ray`` (one start, not one per count)."""
    if options.engine == Engine.RAY:
        from recsys.events.ray_engine import ray_session

        return ray_session()
    return nullcontext()


def _log_file(result: FileReport) -> None:
    if result.status == "failed":
        log.warning("%s: %s", result.path, result.error)
    else:
        log.info(
            "%s: %s, %d events (%d new, %d duplicates, %d bad rows)",
            result.path,
            result.status,
            result.events,
            result.added,
            result.duplicates,
            result.bad_rows,
        )


def catalog_ids(database: Database) -> list[str]:
    """External ids of every catalog video that can take part in pairs (not deleted)."""
    with database.session() as session:
        return list(
            session.scalars(select(Video.video_id).where(Video.status != VideoStatus.DELETED.value))
        )


def _materialise(
    settings: Settings, database: Database, store: EventStore, options: EventOptions
) -> RelatedResult:
    result = RelatedResult(source=options.source)
    sql = store.related_sql(options, catalog_ids(database))
    directory = events_dir(settings)
    target = directory / f"{options.source}.pairs.csv"
    partial = directory / f".{options.source}.pairs.csv.partial"
    escaped = str(partial).replace("'", "''")
    store.con.execute(
        f"COPY (SELECT video_a, video_b, weight FROM ({sql}) ORDER BY video_a, video_b) "
        f"TO '{escaped}' (HEADER, DELIMITER ',')"
    )
    os.replace(partial, target)
    result.pairs_file = str(target)
    loaded = load_related(settings, database, target, source=options.source)
    result.pairs = loaded.pairs
    result.inserted, result.updated, result.unchanged = (
        loaded.inserted,
        loaded.updated,
        loaded.unchanged,
    )
    result.problems.extend(loaded.bad_rows)
    if loaded.unknown_ids:  # a video deleted between the catalog read and the load
        result.problems.append(f"{len(loaded.unknown_ids)} videos left the catalog meanwhile")
    keep = {
        frozenset((str(a), str(b)))
        for a, b in store.con.execute(f"SELECT video_a, video_b FROM ({sql})").fetchall()
    }
    result.removed = _remove_stale(database, options.source, keep)
    unknown = store.unknown_videos()
    result.unknown_videos, result.unknown_events, result.unknown_examples = unknown
    store.remember_graph_options(options)
    return result


def _remove_stale(database: Database, source: str, keep: set[frozenset[str]]) -> int:
    """Delete the pairs of ``source`` that are not in ``keep`` (external id pairs)."""
    video_a, video_b = aliased(Video), aliased(Video)
    with database.session() as session:
        rows = session.execute(
            select(RelatedPair.id, video_a.video_id, video_b.video_id)
            .join(video_a, video_a.id == RelatedPair.video_a)
            .join(video_b, video_b.id == RelatedPair.video_b)
            .where(RelatedPair.source == source)
        ).all()
        stale = [pair_id for pair_id, a, b in rows if frozenset((a, b)) not in keep]
        for start in range(0, len(stale), 500):
            session.execute(
                delete(RelatedPair).where(RelatedPair.id.in_(stale[start : start + 500]))
            )
    return len(stale)


def stored_options(store: EventStore) -> EventOptions:
    """The options the store was last counted and materialised with."""
    counts = store.stored_count_options() or {}
    graph = store.graph_options or {}
    return EventOptions(source=store.source, **counts, **graph)


def refresh_related(settings: Settings, database: Database) -> list[RelatedResult]:
    """Materialise every source's graph again with its last options (new videos join)."""
    results: list[RelatedResult] = []
    for source in store_sources(settings):
        with EventStore.open(settings, source, create=False) as store:
            results.append(_materialise(settings, database, store, stored_options(store)))
    return results
