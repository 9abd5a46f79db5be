"""Watch events -> the co-watch graph, in DuckDB.

A team has watch events (user, video, time), not pairs. :func:`ingest_events` reads CSV or
Parquet event files (:mod:`~recsys.events.read`: schema mapping, timestamp parsing, every bad
row counted with its reason), keeps them in an aggregate store under
``$RECSYS_HOME/events/<source>.duckdb`` (:mod:`~recsys.events.store`: file hashes, the event
history, the summed counts), counts co-watches per batch of users
(:mod:`~recsys.events.aggregate`: sessions or time windows, per-user caps, minimum watch time,
c_i and c_ij; the batch function is the map step of a distributed engine) and writes the
normalised top-N graph into ``related_pairs`` under its source (:mod:`~recsys.events.ingest`).
Options and their defaults: :class:`~recsys.events.options.EventOptions`.
"""

from recsys.events.aggregate import Counts, count_batch, merge_counts
from recsys.events.ingest import (
    EventsReport,
    RelatedResult,
    expand_event_paths,
    ingest_events,
    refresh_related,
)
from recsys.events.options import (
    COLUMNS,
    REQUIRED_COLUMNS,
    EventOptionError,
    EventOptions,
    parse_columns,
    parse_duration,
)
from recsys.events.read import FileReport, Problem
from recsys.events.store import CowatchGraph, EventStore, store_sources

__all__ = [
    "COLUMNS",
    "REQUIRED_COLUMNS",
    "Counts",
    "CowatchGraph",
    "EventOptionError",
    "EventOptions",
    "EventStore",
    "EventsReport",
    "FileReport",
    "Problem",
    "RelatedResult",
    "count_batch",
    "expand_event_paths",
    "ingest_events",
    "merge_counts",
    "parse_columns",
    "parse_duration",
    "refresh_related",
    "store_sources",
]
