"""Reading watch-event files (CSV or Parquet) into DuckDB, with every bad row accounted for.

A file gives ``user_id, video_id, timestamp`` and optionally ``watch_seconds, session_id``
(other names are mapped with ``EventOptions.columns``; other columns are ignored). Parquet goes
through ``read_parquet`` (ids may be strings or integers; timestamps a timestamp/date type,
epoch seconds as a number, or text). CSV goes through ``read_csv`` with every column read as
text (``all_varchar``: no type guess can drop a row) and rejected lines kept with their line
number (``store_rejects``), then typed here:

* ``timestamp``: epoch seconds (``1704103200``, ``1704103200.25``) or ISO 8601
  (``2024-01-01T10:00:00Z``, ``2024-01-01 12:00:00+02:00``, ``2024-01-01``); without an offset
  it is UTC. Epoch values above 1e11 (year 5138) are refused: they are milliseconds.
* ``watch_seconds``: a non-negative number, or empty (unknown).

A row with a problem (empty id, unparsable timestamp, bad watch time, a malformed CSV line, an
id over 255 characters) is counted under its reason with a few examples; every other row is
kept. A file that cannot be used at all (missing, empty, not CSV/Parquet, a Parquet schema
without the needed columns or with unusable types) gets an ``error`` and adds nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from recsys.events.options import COLUMNS, REQUIRED_COLUMNS, EventOptions

#: Examples kept per problem reason.
EXAMPLES = 3
#: The catalog's limit on an external video id (``videos.video_id``).
MAX_ID_LENGTH = 255
#: Epoch seconds above this are milliseconds (or garbage): year 5138.
MAX_EPOCH_S = 1e11
PARQUET_MAGIC = b"PAR1"

_INTEGER = {
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "UHUGEINT",
}
_NUMBER = _INTEGER | {"FLOAT", "DOUBLE", "REAL"}
_TIMESTAMP = {
    "TIMESTAMP",
    "TIMESTAMP_S",
    "TIMESTAMP_MS",
    "TIMESTAMP_NS",
    "TIMESTAMP WITH TIME ZONE",
    "DATE",
}
_ALLOWED = {
    "user_id": ("text or integer", {"VARCHAR", "UUID"} | _INTEGER),
    "video_id": ("text or integer", {"VARCHAR", "UUID"} | _INTEGER),
    "timestamp": ("timestamp, date, epoch seconds or text", {"VARCHAR"} | _NUMBER | _TIMESTAMP),
    "watch_seconds": ("number or text", {"VARCHAR"} | _NUMBER),
    "session_id": ("text or integer", {"VARCHAR", "UUID"} | _INTEGER),
}


class FileProblem(Exception):
    """The whole file cannot be used (internal: becomes ``FileReport.error``)."""


@dataclass
class Problem:
    reason: str
    count: int
    examples: list[str] = field(default_factory=list)


@dataclass
class FileReport:
    """What one event file gave: rows read, valid events, each problem with its count."""

    path: str
    format: str = ""
    sha256: str = ""
    status: str = ""  # added | unchanged (this content was ingested before) | failed
    rows: int = 0  # data rows read (CSV lines rejected by the parser included)
    events: int = 0  # valid events in the file
    added: int = 0  # events new to the store
    duplicates: int = 0  # valid events already in the file or the store
    problems: list[Problem] = field(default_factory=list)
    error: str | None = None
    previously: str | None = None  # for ``unchanged``: the path it was ingested from

    @property
    def bad_rows(self) -> int:
        return sum(p.count for p in self.problems)

    def as_dict(self) -> dict[str, Any]:
        payload = asdict(self)
        payload["bad_rows"] = self.bad_rows
        return payload


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def detect_format(path: Path) -> str:
    """``parquet`` or ``csv`` from the suffix, else from the Parquet magic bytes."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in {".parquet", ".pq"}:
        return "parquet"
    if any(s in {".csv", ".tsv", ".txt"} for s in suffixes):
        return "csv"
    with path.open("rb") as handle:
        return "parquet" if handle.read(4) == PARQUET_MAGIC else "csv"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _source(path: Path, kind: str, rejects: str) -> str:
    if kind == "parquet":
        return f"read_parquet({_literal(str(path))})"
    return (
        f"read_csv({_literal(str(path))}, header = true, all_varchar = true, "
        f"store_rejects = true, rejects_table = {_literal(rejects + '_errors')}, "
        f"rejects_scan = {_literal(rejects + '_scans')})"
    )


def _schema(con: duckdb.DuckDBPyConnection, source: str, kind: str) -> dict[str, str]:
    try:
        rows = con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
    except duckdb.Error as error:
        what = "Parquet" if kind == "parquet" else "CSV"
        raise FileProblem(f"not a readable {what} file: {_first_line(error)}") from None
    return {str(name): str(kind_).upper() for name, kind_, *_ in rows}


def _mapped(schema: dict[str, str], options: EventOptions) -> dict[str, tuple[str, str]]:
    """{our column: (the file's column, its type)} for the columns present; checks types."""
    present: dict[str, tuple[str, str]] = {}
    for ours in COLUMNS:
        theirs = options.column(ours)
        if theirs in schema:
            present[ours] = (theirs, schema[theirs])
    missing = [c for c in REQUIRED_COLUMNS if c not in present]
    if missing:
        shown = ", ".join(schema) if schema else "none"
        hint = " ".join(f"--column {c}=NAME" for c in missing)
        wanted = ", ".join(f"{c} (as {options.column(c)!r})" for c in missing)
        raise FileProblem(
            f"missing column(s) {wanted}; the file has: {shown}. "
            f"Name the file's columns with {hint}"
        )
    for ours, (theirs, kind) in present.items():
        label, allowed = _ALLOWED[ours]
        base = kind.split("(")[0].strip()
        if base not in allowed and not base.startswith("DECIMAL"):
            raise FileProblem(
                f"column {theirs!r} ({ours}) has type {kind}; expected {label}: fix the "
                "file's schema or map another column"
            )
    return present


def _text(column: str) -> str:
    return f"NULLIF(trim(CAST({_ident(column)} AS VARCHAR)), '')"


def _timestamp_sql(column: str, kind: str) -> tuple[str, str]:
    """(microseconds expression, problem expression) for the timestamp column."""
    col = _ident(column)
    base = kind.split("(")[0].strip()
    if base in _TIMESTAMP:
        micros = f"epoch_us(CAST({col} AS TIMESTAMP))" if base == "DATE" else f"epoch_us({col})"
        problem = f"CASE WHEN {col} IS NULL THEN 'empty timestamp' END"
        return micros, problem
    if base in _NUMBER or base.startswith("DECIMAL"):
        number = f"CAST({col} AS DOUBLE)"
        text = f"CAST({col} AS VARCHAR)"
    else:
        text = _text(column)
        number = f"TRY_CAST({text} AS DOUBLE)"
    iso = f"TRY_CAST({text} AS TIMESTAMPTZ)"
    micros = (
        f"CASE WHEN {number} IS NOT NULL AND isfinite({number}) "
        f"AND {number} BETWEEN 0 AND {MAX_EPOCH_S:.0f} "
        f"THEN CAST(round({number} * 1000000) AS BIGINT) "
        f"WHEN {number} IS NULL THEN epoch_us({iso}) END"
    )
    problem = (
        f"CASE WHEN {text} IS NULL THEN 'empty timestamp' "
        f"WHEN {number} IS NOT NULL AND {number} > {MAX_EPOCH_S:.0f} AND isfinite({number}) "
        "THEN 'timestamp too large for epoch seconds (milliseconds? divide by 1000)' "
        f"WHEN {number} IS NOT NULL AND NOT ({number} BETWEEN 0 AND {MAX_EPOCH_S:.0f}) "
        "THEN 'timestamp out of range (epoch seconds must be 0 .. 1e11)' "
        f"WHEN {number} IS NULL AND {iso} IS NULL "
        "THEN 'unparsable timestamp (not ISO 8601 or epoch seconds)' END"
    )
    return micros, problem


def _watch_sql(column: str, kind: str) -> tuple[str, str]:
    col = _ident(column)
    base = kind.split("(")[0].strip()
    if base in _NUMBER or base.startswith("DECIMAL"):
        value = f"CAST({col} AS DOUBLE)"
        bad_text = "false"
    else:
        text = _text(column)
        value = f"TRY_CAST({text} AS DOUBLE)"
        bad_text = f"({text} IS NOT NULL AND {value} IS NULL)"
    problem = (
        f"CASE WHEN {bad_text} THEN 'watch_seconds is not a number' "
        f"WHEN {value} IS NOT NULL AND (NOT isfinite({value}) OR {value} < 0) "
        "THEN 'watch_seconds is negative or not finite' END"
    )
    return value, problem


def stage_file(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    options: EventOptions,
    table: str,
    sha256: str | None = None,
) -> FileReport:
    """Read ``path`` into the temp table ``table(user_id, video_id, t, watch, sid)`` (valid
    rows only; ``t`` in microseconds since the epoch, UTC) and report what was in it.

    The file's hash, format and problems are filled in; ``status`` is left to the caller.
    """
    report = FileReport(path=str(path), sha256=sha256 or "")
    try:
        _stage(con, path, options, table, report)
    except FileProblem as problem:
        report.error = str(problem)
        report.status = "failed"
    return report


def _stage(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    options: EventOptions,
    table: str,
    report: FileReport,
) -> None:
    if not path.is_file():
        raise FileProblem("file not found" if not path.exists() else "not a regular file")
    try:
        size = path.stat().st_size
        report.sha256 = report.sha256 or file_sha256(path)
        report.format = detect_format(path)
    except OSError as error:
        raise FileProblem(f"cannot be read: {error.strerror or error}") from None
    if size == 0:
        raise FileProblem("empty file (0 bytes): no events; export the log again")
    rejects = f"{table}_rejects"
    source = _source(path, report.format, rejects)
    schema = _schema(con, source, report.format)
    columns = _mapped(schema, options)
    user = _text(columns["user_id"][0])
    video = _text(columns["video_id"][0])
    micros, time_problem = _timestamp_sql(*columns["timestamp"])
    watch, watch_problem = ("NULL::DOUBLE", "NULL")
    if "watch_seconds" in columns:
        watch, watch_problem = _watch_sql(*columns["watch_seconds"])
    sid = _text(columns["session_id"][0]) if "session_id" in columns else "NULL::VARCHAR"
    raw_time = f"CAST({_ident(columns['timestamp'][0])} AS VARCHAR)"
    raw_watch = "NULL::VARCHAR"
    if "watch_seconds" in columns:
        raw_watch = f"CAST({_ident(columns['watch_seconds'][0])} AS VARCHAR)"
    problem = (
        f"coalesce("
        f"CASE WHEN {user} IS NULL THEN 'empty user_id' END, "
        f"CASE WHEN {video} IS NULL THEN 'empty video_id' END, "
        f"CASE WHEN length({video}) > {MAX_ID_LENGTH} "
        f"THEN 'video_id longer than {MAX_ID_LENGTH} characters' END, "
        f"{time_problem}, {watch_problem})"
    )
    staged = f"{table}_all"
    try:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {staged} AS SELECT {user} AS user_id, "
            f"{video} AS video_id, {micros} AS t, {watch} AS watch, {sid} AS sid, "
            f"{raw_time} AS raw_time, {raw_watch} AS raw_watch, {problem} AS problem "
            f"FROM {source}"
        )
    except duckdb.Error as error:
        raise FileProblem(f"cannot be read: {_first_line(error)}") from None
    try:
        rows, bad = con.execute(f"SELECT count(*), count(problem) FROM {staged}").fetchone() or (
            0,
            0,
        )
        report.rows = int(rows)
        if bad:
            _collect_problems(con, staged, report)
        if report.format == "csv":
            _collect_rejects(con, rejects, report)
        report.events = report.rows - int(bad)
        report.rows += sum(p.count for p in report.problems if p.reason.startswith("malformed"))
        if report.rows == 0:
            raise FileProblem("no events in the file (a header only, or no rows)")
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT user_id, video_id, t, watch, sid "
            f"FROM {staged} WHERE problem IS NULL"
        )
    finally:
        con.execute(f"DROP TABLE IF EXISTS {staged}")
        for suffix in ("_errors", "_scans"):
            con.execute(f"DROP TABLE IF EXISTS {rejects}{suffix}")


def _collect_problems(con: duckdb.DuckDBPyConnection, staged: str, report: FileReport) -> None:
    rows = con.execute(
        f"""
        WITH bad AS (
            SELECT problem, user_id, video_id, raw_time, raw_watch,
                   count(*) OVER (PARTITION BY problem) AS n,
                   row_number() OVER (PARTITION BY problem ORDER BY user_id, video_id, raw_time)
                       AS k
            FROM {staged} WHERE problem IS NOT NULL
        )
        SELECT problem, n, list(
            'user ' || coalesce(user_id, '?') || ', video ' || coalesce(video_id, '?')
            || ', timestamp ' || coalesce(raw_time, '?')
            || CASE WHEN raw_watch IS NULL THEN '' ELSE ', watch_seconds ' || raw_watch END
            ORDER BY k)
        FROM bad WHERE k <= {EXAMPLES} GROUP BY problem, n ORDER BY n DESC, problem
        """
    ).fetchall()
    for reason, count, examples in rows:
        report.problems.append(Problem(str(reason), int(count), [str(e) for e in examples]))


def _collect_rejects(con: duckdb.DuckDBPyConnection, rejects: str, report: FileReport) -> None:
    """Lines the CSV parser refused (wrong number of columns, bad quoting, not UTF-8)."""
    try:
        rows = con.execute(
            f"""
            SELECT error_type, count(*), list('line ' || line || ': ' || csv_line ORDER BY line)
            FROM (SELECT DISTINCT line, error_type, csv_line FROM {rejects}_errors)
            GROUP BY error_type ORDER BY error_type
            """
        ).fetchall()
    except duckdb.CatalogException:
        return  # no rejects table: nothing was refused
    for kind, count, examples in rows:
        reason = f"malformed CSV line ({str(kind).lower()})"
        report.problems.append(Problem(reason, int(count), [str(e) for e in examples][:EXAMPLES]))
