"""The aggregate store: one DuckDB file per events source under ``$RECSYS_HOME/events/``.

``<source>.duckdb`` keeps

* ``files``: the SHA-256 of every event file ingested (the same content again adds nothing);
* ``users`` / ``videos``: the external ids and their dense integer keys;
* ``events``: every valid, distinct event (user key, video key, time in microseconds, watch
  seconds, session code) — the history, so that counts can be recomputed exactly: when a new
  file arrives, the users it touches are recounted from their full history (old contribution
  out, new one in), which makes an incremental add equal to a one-shot count of all files, and
  a change of the count options recounts everything;
* ``video_counts`` / ``pair_counts`` / ``totals``: the summed counts for the stored count
  options (``meta``), with videos that are not (yet) in the catalog included, so they join the
  related pairs when the video is ingested later.

New files are added in batches, one DuckDB transaction each: a killed ingest leaves the store
as it was before that batch, and running it again finishes the work. A store that could not be
created (a full disk) is removed, so the next run starts afresh instead of failing to open it.
One process writes a store at a time; a second one gets a
:class:`~recsys.errors.ConflictError` saying so.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from recsys.choices import Engine
from recsys.errors import ConflictError, ResourceError, UserError
from recsys.events.aggregate import TOTALS, Counts, count_batch, merge_counts, relatedness_sql
from recsys.events.options import EventOptions
from recsys.events.read import FileReport, file_sha256, stage_files
from recsys.settings import Settings

log = logging.getLogger(__name__)

SCHEMA_VERSION = "1"
#: Events from which the local engine counts batches on every core at once.
PARALLEL_MIN_EVENTS = 1_000_000
#: Bytes of new event files read and merged together (one scan, one transaction).
BATCH_BYTES = 256 * 1024 * 1024
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS files (
    sha256 VARCHAR PRIMARY KEY, path VARCHAR, format VARCHAR, rows BIGINT, events BIGINT,
    added BIGINT, duplicates BIGINT, bad_rows BIGINT, ingested_at TIMESTAMP
);
CREATE TABLE IF NOT EXISTS users (user_id VARCHAR, uid INTEGER);
CREATE TABLE IF NOT EXISTS videos (video_id VARCHAR, vid INTEGER);
CREATE TABLE IF NOT EXISTS events (uid INTEGER, vid INTEGER, t BIGINT, watch DOUBLE, sid BIGINT);
CREATE TABLE IF NOT EXISTS video_counts (vid INTEGER, n BIGINT, events BIGINT);
CREATE TABLE IF NOT EXISTS pair_counts (a INTEGER, b INTEGER, n BIGINT);
CREATE TABLE IF NOT EXISTS totals (
    baskets BIGINT, users BIGINT, events BIGINT, capped_users BIGINT, capped_events BIGINT,
    short_events BIGINT
);
ALTER TABLE totals ADD COLUMN IF NOT EXISTS long_baskets BIGINT DEFAULT 0;
"""


def events_dir(settings: Settings) -> Path:
    return settings.resolved_home / "events"


def store_path(settings: Settings, source: str) -> Path:
    return events_dir(settings) / f"{source}.duckdb"


def store_sources(settings: Settings) -> list[str]:
    """The sources that have an aggregate store under this home."""
    directory = events_dir(settings)
    return sorted(p.stem for p in directory.glob("*.duckdb")) if directory.is_dir() else []


def _sha256(path: Path) -> str | None:
    """The file's hash, None when it cannot be read (staging reports why)."""
    if not path.is_file():
        return None
    try:
        return file_sha256(path)
    except OSError:
        return None


def _unchanged(path: Path, before: FileReport) -> FileReport:
    return FileReport(
        path=str(path),
        format=before.format,
        sha256=before.sha256,
        status="unchanged",
        rows=before.rows,
        events=before.events,
        previously=before.path,
    )


def _batches_of(
    paths: Sequence[Path], files: list[tuple[int, str | None]]
) -> Iterator[list[tuple[int, str | None]]]:
    """``files`` in order, cut where a batch would pass ``BATCH_BYTES`` (a large file is a
    batch of its own, as it always was)."""
    batch: list[tuple[int, str | None]] = []
    size = 0
    for item in files:
        try:
            length = paths[item[0]].stat().st_size
        except OSError:
            length = 0
        if batch and size + length > BATCH_BYTES:
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += length
    if batch:
        yield batch


def _remove_store(path: Path) -> None:
    """Delete a store this run created and could not finish (its file and its log)."""
    for leftover in (path, path.with_name(path.name + ".wal")):
        leftover.unlink(missing_ok=True)


def _store_error(path: Path, created: bool, error: duckdb.Error) -> ResourceError:
    what = "created (it was removed)" if created else "written (it is as before this run)"
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return ResourceError(
        f"the events store {path} could not be {what}: {reason}; free disk space there "
        "(or fix its permissions) and run the command again"
    )


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    """Roll back, unless the failure already ended the transaction (a failed COMMIT): the
    error that matters is the one being raised."""
    with suppress(duckdb.TransactionException):
        con.execute("ROLLBACK")


@dataclass
class CowatchGraph:
    """Related pairs computed from the stored events (external ids, ``video_a < video_b``)."""

    video_a: list[str] = field(default_factory=list)
    video_b: list[str] = field(default_factory=list)
    weight: np.ndarray = field(default_factory=lambda: np.zeros(0))
    cowatch: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    counts: dict[str, int] = field(default_factory=dict)  # c_i by external id
    baskets: int = 0

    def as_dict(self) -> dict[tuple[str, str], float]:
        return {
            (a, b): float(w)
            for a, b, w in zip(self.video_a, self.video_b, self.weight, strict=True)
        }


class EventStore:
    """The aggregate store of one source (open it with :meth:`open`, a context manager)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path, source: str) -> None:
        self.con = con
        self.path = path
        self.source = source
        self._staged = 0

    # -- opening -----------------------------------------------------------------------------

    @classmethod
    @contextmanager
    def open(cls, settings: Settings, source: str, *, create: bool = True) -> Iterator[EventStore]:
        path = store_path(settings, source)
        if not create and not path.is_file():
            raise UserError(
                f"no events ingested for source {source!r} (no {path}); "
                "run recsys ingest --events FILE first"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        spill = path.parent / "tmp"
        created = not path.exists()
        try:
            con = duckdb.connect(str(path))
        except duckdb.IOException as error:
            if "lock" in str(error).lower():
                raise ConflictError(
                    f"the events store {path} is in use by another process (an ingest "
                    "running now?): wait for it to finish, then run this again"
                ) from None
            if created:
                _remove_store(path)
            raise _store_error(path, created, error) from None
        try:
            con.execute("SET TimeZone = 'UTC'")
            con.execute(f"SET temp_directory = '{str(spill).replace(chr(39), chr(39) * 2)}'")
            con.execute("SET preserve_insertion_order = false")
            con.execute(_SCHEMA)
            version = con.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if version is None:
                con.execute("INSERT INTO meta VALUES ('schema', ?)", [SCHEMA_VERSION])
            elif version[0] != SCHEMA_VERSION:
                raise UserError(
                    f"the events store {path} has schema {version[0]}, this version reads "
                    f"{SCHEMA_VERSION}: move it away and ingest the event files again"
                )
            yield cls(con, path, source)
            con.close()  # the last checkpoint may fail too (a full disk)
        except BaseException as error:
            with suppress(duckdb.Error):
                con.close()
            if created:  # a half-made store would fail every later run: start afresh then
                _remove_store(path)
            if isinstance(error, duckdb.IOException):
                raise _store_error(path, created, error) from None
            raise

    # -- meta --------------------------------------------------------------------------------

    def _meta(self, key: str) -> Any:
        row = self.con.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return json.loads(row[0]) if row else None

    def _set_meta(self, key: str, value: Any) -> None:
        self.con.execute(
            "INSERT OR REPLACE INTO meta VALUES (?, ?)", [key, json.dumps(value, sort_keys=True)]
        )

    @property
    def graph_options(self) -> dict[str, Any] | None:
        """The graph options of the last materialisation (re-used when videos join later)."""
        value = self._meta("graph")
        return value if isinstance(value, dict) else None

    def remember_graph_options(self, options: EventOptions) -> None:
        self._set_meta("graph", options.graph_key())

    def stored_count_options(self) -> dict[str, Any] | None:
        value = self._meta("counts")
        return value if isinstance(value, dict) else None

    def _scalar(self, sql: str, params: list[Any] | None = None) -> int:
        row = self.con.execute(sql, params or []).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    # -- adding files ------------------------------------------------------------------------

    def ingested(self, sha256: str) -> FileReport | None:
        """The stored report of the file with this content, or None."""
        return self._ingested_many([sha256]).get(sha256)

    def _ingested_many(self, hashes: list[str]) -> dict[str, FileReport]:
        """{content hash: its stored report} of the contents ingested before, in one query."""
        if not hashes:
            return {}
        rows = self.con.execute(
            "SELECT sha256, path, format, rows, events, added, duplicates FROM files "
            "WHERE sha256 IN (SELECT unnest(?::VARCHAR[]))",
            [hashes],
        ).fetchall()
        return {
            str(sha256): FileReport(
                path=str(path),
                format=str(kind),
                sha256=str(sha256),
                rows=int(rows_),
                events=int(events),
                added=int(added),
                duplicates=int(duplicates),
            )
            for sha256, path, kind, rows_, events, added, duplicates in rows
        }

    def add_file(self, path: Path, options: EventOptions) -> FileReport:
        """Add one event file; a file whose content was added before changes nothing
        (``unchanged``, with what it gave then)."""
        return self.add_files([path], options)[0]

    def add_files(self, paths: Sequence[Path], options: EventOptions) -> list[FileReport]:
        """Add event files, a report each, in order (see :meth:`add_file`).

        New files are read together (one scan per format and header, see
        :func:`~recsys.events.read.stage_files`) and merged in one transaction per batch of up
        to ``BATCH_BYTES``: a killed ingest leaves the store as it was before that batch, and
        running it again finishes the work. The result equals adding the files one by one.
        """
        self.ensure_counts(options)
        reports: dict[int, FileReport] = {}
        firsts: dict[str, int] = {}
        fresh: list[tuple[int, str | None]] = []
        repeated: list[int] = []  # the same content as an earlier file of this call
        hashes = [_sha256(path) for path in paths]
        known = self._ingested_many([h for h in hashes if h is not None])
        for index, (path, sha256) in enumerate(zip(paths, hashes, strict=True)):
            before = known.get(sha256) if sha256 else None
            if before is not None:
                reports[index] = _unchanged(path, before)
            elif sha256 is not None and sha256 in firsts:
                repeated.append(index)
            else:
                if sha256 is not None:
                    firsts[sha256] = index
                fresh.append((index, sha256))
        for batch in _batches_of(paths, fresh):
            for (index, _), report in zip(
                batch, self._add_batch(paths, batch, options), strict=True
            ):
                reports[index] = report
        for index in repeated:
            reports[index] = self.add_files([paths[index]], options)[0]
        return [reports[index] for index in range(len(paths))]

    def _add_batch(
        self, paths: Sequence[Path], batch: list[tuple[int, str | None]], options: EventOptions
    ) -> list[FileReport]:
        self._staged += 1
        table = f"staged_{self._staged}"
        files = [(paths[index], sha256) for index, sha256 in batch]
        reports = stage_files(self.con, files, options, table)
        try:
            good = [i for i, report in enumerate(reports) if report.error is None]
            if not good:
                return reports
            self.con.execute("BEGIN TRANSACTION")
            try:
                self._merge(table, options, reports)
                columns = [
                    [reports[i].sha256 for i in good],
                    [str(files[i][0]) for i in good],
                    [reports[i].format for i in good],
                    *(
                        [int(getattr(reports[i], name)) for i in good]
                        for name in ("rows", "events", "added", "duplicates", "bad_rows")
                    ),
                ]
                kinds = ["VARCHAR"] * 3 + ["BIGINT"] * 5
                unnested = ", ".join(f"unnest(?::{kind}[])" for kind in kinds)
                self.con.execute(
                    f"INSERT INTO files SELECT {unnested}, ? FROM (SELECT 1)",
                    [*columns, datetime.now(UTC).replace(tzinfo=None)],
                )
                self.con.execute("COMMIT")
            except BaseException:
                _rollback(self.con)
                raise
            for i in good:
                reports[i].status = "added"
            return reports
        finally:
            self.con.execute(f"DROP TABLE IF EXISTS {table}")

    def _merge(self, table: str, options: EventOptions, reports: list[FileReport]) -> None:
        """Merge the staged events of ``table`` (column ``f``: the file's position in
        ``reports``) into the history and the counts; fill each report's added/duplicates."""
        con = self.con
        for kind, key, name in (("user_id", "uid", "users"), ("video_id", "vid", "videos")):
            con.execute(
                f"""
                INSERT INTO {name}
                SELECT {kind}, (SELECT coalesce(max({key}), -1) FROM {name})
                               + row_number() OVER (ORDER BY {kind})
                FROM (SELECT DISTINCT s.{kind} FROM {table} s ANTI JOIN {name} USING ({kind}))
                """
            )
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE incoming AS
            SELECT u.uid, v.vid, s.t, s.watch,
                   CASE WHEN s.sid IS NULL THEN -1 ELSE CAST(hash(s.sid) >> 1 AS BIGINT) END
                       AS sid, s.f
            FROM {table} s JOIN users u USING (user_id) JOIN videos v USING (video_id)
            """
        )
        con.execute("CREATE OR REPLACE TEMP TABLE touched AS SELECT DISTINCT uid FROM incoming")
        history = "SELECT * FROM events WHERE uid IN (SELECT uid FROM touched)"
        old = self._scalar(f"SELECT count(*) FROM ({history})")
        # An event is new to the file that brings it first (in order) when the history lacks it.
        added = dict(
            con.execute(
                f"""
                SELECT f, count(*) FROM (
                    SELECT uid, vid, t, min(f) AS f FROM incoming GROUP BY uid, vid, t
                ) ANTI JOIN ({history}) USING (uid, vid, t) GROUP BY f
                """
            ).fetchall()
        )
        for index, report in enumerate(reports):
            if report.error is None:
                report.added = int(added.get(index, 0))
                report.duplicates = report.events - report.added
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE merged AS
            SELECT uid, vid, t, max(watch) AS watch, min(sid) AS sid FROM (
                {history} UNION ALL SELECT uid, vid, t, watch, sid FROM incoming
            ) GROUP BY uid, vid, t
            """
        )
        merged = self._scalar("SELECT count(*) FROM merged")
        if options.engine == Engine.RAY:
            delta = self._count(options, "SELECT * FROM merged", merged)
            if old:
                delta = merge_counts([delta, self._count(options, history, old).negated()])
            self._append(delta)
        else:  # batch by batch of whole users: bounded memory, every core
            queries = ["SELECT * FROM merged"] + ([history] if old else [])
            for delta in self._batches(options, queries, merged):
                self._append(delta)
        if old:
            con.execute("DELETE FROM events WHERE uid IN (SELECT uid FROM touched)")
        con.execute("INSERT INTO events SELECT * FROM merged")
        for name in ("incoming", "touched", "merged"):
            con.execute(f"DROP TABLE IF EXISTS {name}")

    def _fetch(
        self, sql: str, con: duckdb.DuckDBPyConnection | None = None
    ) -> dict[str, np.ndarray]:
        arrays = (
            (con or self.con)
            .execute(
                f"SELECT uid::BIGINT AS uid, vid::BIGINT AS vid, t, "
                f"coalesce(watch, 'NaN'::DOUBLE) AS watch, sid FROM ({sql})"
            )
            .fetchnumpy()
        )
        return {name: np.asarray(values) for name, values in arrays.items()}

    def _append(self, counts: Counts) -> None:
        """Add ``counts`` (possibly negative deltas) to the stored sums."""
        if counts.video.size:
            self._insert(
                "video_counts",
                {
                    "vid": counts.video,
                    "n": counts.video_baskets,
                    "events": counts.video_events,
                },
            )
        if counts.pair_a.size:
            self._insert(
                "pair_counts", {"a": counts.pair_a, "b": counts.pair_b, "n": counts.pair_n}
            )
        self.con.execute(
            f"INSERT INTO totals VALUES ({', '.join('?' * len(TOTALS))})",
            [counts.totals[k] for k in TOTALS],
        )
        self._set_meta("compacted", False)

    def _insert(self, table: str, frame: dict[str, np.ndarray]) -> None:
        columns = ", ".join(frame)
        self.con.execute(f"INSERT INTO {table} SELECT {columns} FROM frame")

    # -- counts ------------------------------------------------------------------------------

    def ensure_counts(self, options: EventOptions) -> bool:
        """Make the stored counts those of ``options`` (recount all when they differ).

        Returns True when a recount happened."""
        wanted = options.count_key()
        stored = self.stored_count_options()
        if stored == wanted:
            return False
        events = self._scalar("SELECT count(*) FROM events")
        self.con.execute("BEGIN TRANSACTION")
        try:
            for table in ("video_counts", "pair_counts", "totals"):
                self.con.execute(f"DELETE FROM {table}")
            if events:
                log.info("recounting %d stored events for %s", events, wanted)
                for counts in self._count_all(options):
                    self._append(counts)
            self._set_meta("counts", wanted)
            self.con.execute("COMMIT")
        except BaseException:
            _rollback(self.con)
            raise
        return stored is not None and events > 0

    def _count_all(
        self,
        options: EventOptions,
        before: datetime | None = None,
        since: datetime | None = None,
    ) -> Iterator[Counts]:
        events = self._scalar("SELECT count(*) FROM events")
        if options.engine == Engine.RAY:
            yield self._count(options, "SELECT * FROM events", events, before, since)
            return
        yield from self._batches(options, ["SELECT * FROM events"], events, before, since)

    def _batches(
        self,
        options: EventOptions,
        queries: list[str],
        rows: int,
        before: datetime | None = None,
        since: datetime | None = None,
    ) -> Iterator[Counts]:
        """Counts per batch of whole users (local engine): the first query's counts minus the
        second's (a user's new history minus the old), batch by batch. The batches are read on
        this connection (temporary tables are visible) and counted in threads (numpy and
        DuckDB release the GIL): at least one batch per core once there are enough events, at
        most one per core in memory at once."""
        workers = max(1, min(os.cpu_count() or 1, 8))
        parts = max(1, math.ceil(rows / options.batch_events))
        if rows >= PARALLEL_MIN_EVENTS:
            parts = max(parts, workers)
        else:
            workers = 1

        def count(batches: list[dict[str, np.ndarray]]) -> Counts:
            counted = [count_batch(b, options, before=before, since=since) for b in batches]
            if len(counted) == 1:
                return counted[0]
            return merge_counts([counted[0], *(c.negated() for c in counted[1:])])

        def fetch(part: int) -> list[dict[str, np.ndarray]]:
            where = f"hash(uid) % {parts} = {part}"
            return [self._fetch(f"SELECT * FROM ({sql}) WHERE {where}") for sql in queries]

        if workers == 1:
            for part in range(parts):
                yield count(fetch(part))
            return
        with ThreadPoolExecutor(workers) as pool:
            pending: deque[Future[Counts]] = deque()
            for part in range(parts):
                if len(pending) >= workers:
                    yield pending.popleft().result()
                pending.append(pool.submit(count, fetch(part)))
            while pending:
                yield pending.popleft().result()

    def _count(
        self,
        options: EventOptions,
        sql: str,
        rows: int,
        before: datetime | None = None,
        since: datetime | None = None,
    ) -> Counts:
        """The summed counts of the events ``sql`` selects, on the options' engine."""
        if options.engine != Engine.RAY:
            return merge_counts(self._batches(options, [sql], rows, before, since))
        from recsys.events.ray_engine import count_ray

        directory = self.path.parent / "tmp" / f"ray-{self.source}-{os.getpid()}"
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        try:
            escaped = str(directory / "events.parquet").replace("'", "''")
            self.con.execute(
                f"COPY (SELECT uid::BIGINT AS uid, vid::BIGINT AS vid, t, "
                f"coalesce(watch, 'NaN'::DOUBLE) AS watch, sid FROM ({sql})) "
                f"TO '{escaped}' (FORMAT parquet, ROW_GROUP_SIZE 1000000)"
            )
            return count_ray([directory / "events.parquet"], options, before=before, since=since)
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    def compact(self) -> None:
        """Sum the stored delta rows into one row per video / pair."""
        if self._meta("compacted") is True:
            return
        con = self.con
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(
                "CREATE OR REPLACE TEMP TABLE c AS SELECT vid, sum(n)::BIGINT AS n, "
                "sum(events)::BIGINT AS events FROM video_counts GROUP BY vid "
                "HAVING sum(n) <> 0 OR sum(events) <> 0"
            )
            con.execute("DELETE FROM video_counts")
            con.execute("INSERT INTO video_counts SELECT * FROM c")
            con.execute(
                "CREATE OR REPLACE TEMP TABLE c AS SELECT a, b, sum(n)::BIGINT AS n "
                "FROM pair_counts GROUP BY a, b HAVING sum(n) <> 0"
            )
            con.execute("DELETE FROM pair_counts")
            con.execute("INSERT INTO pair_counts SELECT * FROM c")
            sums = ", ".join(f"coalesce(sum({k}), 0)" for k in TOTALS)
            con.execute(f"CREATE OR REPLACE TEMP TABLE c AS SELECT {sums} FROM totals")
            con.execute("DELETE FROM totals")
            con.execute("INSERT INTO totals SELECT * FROM c")
            con.execute("DROP TABLE c")
            self._set_meta("compacted", True)
            con.execute("COMMIT")
        except BaseException:
            _rollback(con)
            raise

    def totals(self) -> dict[str, int]:
        sums = ", ".join(f"coalesce(sum({k}), 0)" for k in TOTALS)
        row = self.con.execute(f"SELECT {sums} FROM totals").fetchone() or (0,) * len(TOTALS)
        return {k: int(v) for k, v in zip(TOTALS, row, strict=True)}

    def stats(self) -> dict[str, int]:
        """What the store holds: files, events, users, videos."""
        return {
            "files": self._scalar("SELECT count(*) FROM files"),
            "events": self._scalar("SELECT count(*) FROM events"),
            "users": self._scalar("SELECT count(*) FROM users"),
            "videos": self._scalar("SELECT count(*) FROM videos"),
        }

    def counts(self) -> Counts:
        """The stored counts as arrays of video keys (compacted first)."""
        self.compact()
        videos = self.con.execute(
            "SELECT vid::BIGINT, n, events FROM video_counts ORDER BY vid"
        ).fetchnumpy()
        pairs = self.con.execute(
            "SELECT a::BIGINT, b::BIGINT, n FROM pair_counts ORDER BY a, b"
        ).fetchnumpy()
        v, n, e = (np.asarray(x) for x in videos.values())
        a, b, m = (np.asarray(x) for x in pairs.values())
        return Counts(v, n, e, a, b, m, self.totals())

    def first_seen(self) -> dict[str, datetime]:
        """{external video id: its earliest stored event} (UTC): a video first seen at or after
        a time split's T is cold at T."""
        rows = self.con.execute(
            "SELECT v.video_id, min(e.t) FROM events e JOIN videos v USING (vid) GROUP BY 1"
        ).fetchall()
        return {str(video): datetime.fromtimestamp(int(t) / 1e6, tz=UTC) for video, t in rows}

    def keys(self) -> dict[str, int]:
        """{external video id: video key in this store}."""
        return dict(self.con.execute("SELECT video_id, vid FROM videos").fetchall())

    # -- relatedness -------------------------------------------------------------------------

    def related(
        self,
        options: EventOptions,
        *,
        catalog: list[str] | None = None,
        before: datetime | None = None,
        since: datetime | None = None,
    ) -> CowatchGraph:
        """The related pairs (normalised, min support, top-N) from the counts.

        ``before``/``since`` restrict the events counted (a time split: train on the events
        before T, score on those after); they are counted afresh from the stored history, the
        stored counts are used otherwise. ``catalog`` (external ids) restricts both ends of a
        pair, and so the top-N lists, to videos that exist.
        """
        con = self.con
        if before is None and since is None:
            self.ensure_counts(options)
            self.compact()
            pairs, videos, baskets = "pair_counts", "video_counts", self.totals()["baskets"]
        else:
            counts = merge_counts(self._count_all(options, before=before, since=since))
            self._temp_counts(counts)
            pairs, videos, baskets = "cut_pairs", "cut_videos", counts.totals["baskets"]
        known = None
        if catalog is not None:
            self._temp_catalog(catalog)
            known = "known"
        sql = relatedness_sql(
            options, pairs=pairs, videos=videos, names="videos", baskets=baskets, known=known
        )
        rows = con.execute(f"SELECT * FROM ({sql}) ORDER BY video_a, video_b").fetchnumpy()
        c_i = con.execute(
            f"SELECT v.video_id, c.n FROM {videos} c JOIN videos v USING (vid)"
        ).fetchall()
        return CowatchGraph(
            video_a=[str(x) for x in rows["video_a"]],
            video_b=[str(x) for x in rows["video_b"]],
            weight=np.asarray(rows["weight"], np.float64),
            cowatch=np.asarray(rows["cowatch"], np.int64),
            counts={str(k): int(n) for k, n in c_i},
            baskets=int(baskets),
        )

    def related_sql(self, options: EventOptions, catalog: list[str]) -> str:
        """SQL of the related pairs of the stored counts, restricted to ``catalog``."""
        self.ensure_counts(options)
        self.compact()
        self._temp_catalog(catalog)
        return relatedness_sql(
            options,
            pairs="pair_counts",
            videos="video_counts",
            names="videos",
            baskets=self.totals()["baskets"],
            known="known",
        )

    def _temp_counts(self, counts: Counts) -> None:
        con = self.con
        con.execute(
            "CREATE OR REPLACE TEMP TABLE cut_videos (vid INTEGER, n BIGINT, events BIGINT)"
        )
        con.execute("CREATE OR REPLACE TEMP TABLE cut_pairs (a INTEGER, b INTEGER, n BIGINT)")
        if counts.video.size:
            self._insert(
                "cut_videos",
                {"vid": counts.video, "n": counts.video_baskets, "events": counts.video_events},
            )
        if counts.pair_a.size:
            self._insert("cut_pairs", {"a": counts.pair_a, "b": counts.pair_b, "n": counts.pair_n})

    def _temp_catalog(self, catalog: list[str]) -> None:
        con = self.con
        con.execute("CREATE OR REPLACE TEMP TABLE catalog (video_id VARCHAR)")
        if catalog:
            self._insert("catalog", {"video_id": np.array(catalog, dtype=object)})
        con.execute(
            "CREATE OR REPLACE TEMP TABLE known AS "
            "SELECT v.vid FROM videos v SEMI JOIN catalog c USING (video_id)"
        )

    def unknown_videos(self, sample: int = 10) -> tuple[int, int, list[str]]:
        """(videos of the stored events not in the catalog, their events, a sorted sample of
        their ids); needs :meth:`related` or :meth:`related_sql` with a catalog first."""
        row = self.con.execute(
            "SELECT count(DISTINCT vid), count(*) FROM events "
            "WHERE vid NOT IN (SELECT vid FROM known)"
        ).fetchone() or (0, 0)
        ids = self.con.execute(
            f"""
            SELECT video_id FROM videos WHERE vid NOT IN (SELECT vid FROM known)
            AND vid IN (SELECT DISTINCT vid FROM events) ORDER BY video_id LIMIT {int(sample)}
            """
        ).fetchall()
        return int(row[0]), int(row[1]), [str(r[0]) for r in ids]
