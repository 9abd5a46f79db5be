"""Reading watch-event files (CSV or Parquet) into DuckDB, with every bad row accounted for.

A file gives ``user_id, video_id, timestamp`` and optionally ``watch_seconds, session_id``
(other names are mapped with ``EventOptions.columns``; other columns are ignored). Parquet goes
through ``read_parquet`` (ids may be strings or integers; timestamps a timestamp/date type,
epoch seconds as a number, or text). CSV goes through ``read_csv`` with every column read as
text (``all_varchar``: no type guess can drop a row) and rejected lines kept with their line
number (``store_rejects``), then typed here:

* ``timestamp``: epoch seconds (``1704103200``, ``1704103200.25``) or ISO 8601
  (``2024-01-01T10:00:00Z``, ``2024-01-01 12:00:00+02:00``, ``2024-01-01``); without an offset
  it is UTC. One rule bounds every spelling (text, numbers, Parquet timestamps and dates): a
  time before 1970, after 1e11 epoch seconds (year 5138) or infinite is refused; epoch values
  above 1e11 are most likely milliseconds, and the reason says so.
* ``watch_seconds``: a non-negative number, or empty (unknown).

A row with a problem (empty id, unparsable timestamp, bad watch time, a malformed CSV line, an
id over 255 characters) is counted under its reason with a few examples; every other row is
kept. A file that cannot be used at all (missing, empty, not CSV/Parquet, a Parquet schema
without the needed columns or with unusable types) gets an ``error`` and adds nothing.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from recsys.events.options import COLUMNS, REQUIRED_COLUMNS, EventOptions

#: Examples kept per problem reason.
EXAMPLES = 3
#: The catalog's limit on an external video id (``videos.video_id``).
MAX_ID_LENGTH = 255
#: The latest valid time, in seconds since the epoch (year 5138), for every spelling of a
#: time; epoch numbers above it are milliseconds (or garbage). Times before the epoch are
#: refused too.
MAX_EPOCH_S = 1e11
OUT_OF_RANGE = "timestamp out of range (1970 to year 5138; epoch seconds 0 to 1e11)"
#: The column of a scan that names the file a row came from.
FILE_COLUMN = "__recsys_file"
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


class SchemaProblem(FileProblem):
    """The columns cannot be used: the same for every file of one header (or schema)."""


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


def _source(links: list[str], kind: str, rejects: str) -> str:
    files = "[" + ", ".join(_literal(link) for link in links) + "]"
    if kind == "parquet":
        return f"read_parquet({files}, filename = {_literal(FILE_COLUMN)})"
    return (
        f"read_csv({files}, header = true, all_varchar = true, "
        f"filename = {_literal(FILE_COLUMN)}, "
        f"store_rejects = true, rejects_table = {_literal(rejects + '_errors')}, "
        f"rejects_scan = {_literal(rejects + '_scans')})"
    )


def _schema(con: duckdb.DuckDBPyConnection, source: str, kind: str) -> dict[str, str]:
    try:
        rows = con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
    except duckdb.Error as error:
        what = "Parquet" if kind == "parquet" else "CSV"
        raise FileProblem(f"not a readable {what} file: {_first_line(error)}") from None
    return {str(name): str(kind_).upper() for name, kind_, *_ in rows if name != FILE_COLUMN}


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
        raise SchemaProblem(
            f"missing column(s) {wanted}; the file has: {shown}. "
            f"Name the file's columns with {hint}"
        )
    for ours, (theirs, kind) in present.items():
        label, allowed = _ALLOWED[ours]
        base = kind.split("(")[0].strip()
        if base not in allowed and not base.startswith("DECIMAL"):
            raise SchemaProblem(
                f"column {theirs!r} ({ours}) has type {kind}; expected {label}: fix the "
                "file's schema or map another column"
            )
    return present


def _text(column: str) -> str:
    return f"NULLIF(trim(CAST({_ident(column)} AS VARCHAR)), '')"


def _timestamp_sql(column: str, kind: str) -> tuple[str, str]:
    """(microseconds expression, problem expression) for the timestamp column.

    Whatever the spelling (a native timestamp or date, epoch seconds, ISO text), a time is
    valid only within ``0 .. MAX_EPOCH_S`` seconds of the epoch: infinities and far years are
    refused the same way everywhere."""
    col = _ident(column)
    base = kind.split("(")[0].strip()
    max_us = int(MAX_EPOCH_S * 1_000_000)
    if base in _TIMESTAMP:
        native = f"CAST({col} AS TIMESTAMP)" if base == "DATE" else col
        micros = f"CASE WHEN isfinite({col}) THEN epoch_us({native}) END"
        problem = (
            f"CASE WHEN {col} IS NULL THEN 'empty timestamp' "
            f"WHEN ({micros}) IS NULL OR ({micros}) NOT BETWEEN 0 AND {max_us} "
            f"THEN '{OUT_OF_RANGE}' END"
        )
        return micros, problem
    if base in _NUMBER or base.startswith("DECIMAL"):
        number = f"CAST({col} AS DOUBLE)"
        text = f"CAST({col} AS VARCHAR)"
    else:
        text = _text(column)
        number = f"TRY_CAST({text} AS DOUBLE)"
    iso = f"TRY_CAST({text} AS TIMESTAMPTZ)"
    micros = (
        f"CASE WHEN {number} IS NOT NULL THEN CASE WHEN isfinite({number}) "
        f"AND {number} BETWEEN 0 AND {MAX_EPOCH_S:.0f} "
        f"THEN CAST(round({number} * 1000000) AS BIGINT) END "
        f"WHEN isfinite({iso}) THEN epoch_us({iso}) END"
    )
    problem = (
        f"CASE WHEN {text} IS NULL THEN 'empty timestamp' "
        f"WHEN {number} IS NOT NULL AND {number} > {MAX_EPOCH_S:.0f} AND isfinite({number}) "
        "THEN 'timestamp too large for epoch seconds (milliseconds? divide by 1000)' "
        f"WHEN {number} IS NULL AND {iso} IS NULL "
        "THEN 'unparsable timestamp (not ISO 8601 or epoch seconds)' "
        f"WHEN ({micros}) IS NULL OR ({micros}) NOT BETWEEN 0 AND {max_us} "
        f"THEN '{OUT_OF_RANGE}' END"
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


def stage_files(
    con: duckdb.DuckDBPyConnection,
    files: Sequence[tuple[Path, str | None]],
    options: EventOptions,
    table: str,
) -> list[FileReport]:
    """Read ``files`` ((path, its SHA-256 when known)) into the temp table
    ``table(f, user_id, video_id, t, watch, sid)`` (valid rows only; ``f`` the file's
    position in ``files``; ``t`` in microseconds since the epoch, UTC) and report what was in
    each file.

    Files of one format and header are read in one scan (a directory of hourly logs is one
    query, not one per file); a scan that fails is retried file by file, so a bad file fails
    alone. Each path is read literally: DuckDB sees a link with a plain name, never the name
    itself, so ``*``, ``?`` and ``[`` in a name are not globs. Each report has its hash, format,
    rows and problems; ``status`` is left to the caller except for ``failed``.
    """
    reports = [FileReport(path=str(path), sha256=sha256 or "") for path, sha256 in files]
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {table} (f INTEGER, user_id VARCHAR, video_id VARCHAR, "
        "t BIGINT, watch DOUBLE, sid VARCHAR)"
    )
    checked: dict[int, bytes] = {}
    for index, (path, _) in enumerate(files):
        try:
            checked[index] = _check(path, reports[index])
        except FileProblem as problem:
            _failed(reports[index], problem)
    with tempfile.TemporaryDirectory(prefix="recsys-events-") as scratch:
        links = {}
        for index in checked:
            path = files[index][0]
            link = Path(scratch) / f"{index}.{reports[index].format}{_compression(path)}"
            link.symlink_to(path.absolute())
            links[index] = str(link)
        parquet = [links[i] for i in checked if reports[i].format == "parquet"]
        schemas = _parquet_schemas(con, parquet) if parquet else {}
        groups: dict[tuple[str, bytes], list[int]] = {}
        for index, header in checked.items():
            kind = reports[index].format
            key = header if kind == "csv" else schemas.get(links[index], str(index).encode())
            groups.setdefault((kind, key), []).append(index)
        for (kind, _), members in groups.items():
            try:
                _stage(con, [(i, links[i]) for i in members], kind, options, table, reports)
            except FileProblem as problem:
                if len(members) == 1 or isinstance(problem, SchemaProblem):
                    for index in members:
                        _failed(reports[index], problem)
                    continue
                for index in members:  # find the file at fault; the others go in
                    try:
                        _stage(con, [(index, links[index])], kind, options, table, reports)
                    except FileProblem as alone:
                        _failed(reports[index], alone)
    return reports


def _failed(report: FileReport, problem: FileProblem) -> None:
    report.error = str(problem)
    report.status = "failed"
    report.problems.clear()
    report.rows = report.events = 0


def _parquet_schemas(con: duckdb.DuckDBPyConnection, links: list[str]) -> dict[str, bytes]:
    """{link: its schema} of Parquet files (files of one schema are read together); empty
    when one of them cannot be read (each is then read alone and the bad one named)."""
    files = "[" + ", ".join(_literal(link) for link in links) + "]"
    try:
        rows = con.execute(
            f"SELECT file_name, string_agg(concat_ws(':', name, type, converted_type, "
            f"logical_type), ',') FROM parquet_schema({files}) GROUP BY file_name"
        ).fetchall()
    except duckdb.Error:
        return {}
    return {str(name): str(schema).encode() for name, schema in rows}


def _compression(path: Path) -> str:
    """The compression suffix DuckDB detects from the name (kept on the link)."""
    suffix = path.suffix.lower()
    return suffix if suffix in {".gz", ".zst"} else ""


def _check(path: Path, report: FileReport) -> bytes:
    """Fill in the hash and format of ``path``; return what decides the CSV files it is read
    with: its header line (a compressed file's name: it is read alone)."""
    if not path.is_file():
        raise FileProblem("file not found" if not path.exists() else "not a regular file")
    try:
        size = path.stat().st_size
        report.sha256 = report.sha256 or file_sha256(path)
        report.format = detect_format(path)
        header = b""
        if report.format == "csv":
            with path.open("rb") as handle:
                header = handle.readline(1 << 16)
    except OSError as error:
        raise FileProblem(f"cannot be read: {error.strerror or error}") from None
    if size == 0:
        raise FileProblem("empty file (0 bytes): no events; export the log again")
    return header if not _compression(path) else path.name.encode()


def _stage(
    con: duckdb.DuckDBPyConnection,
    members: list[tuple[int, str]],
    kind: str,
    options: EventOptions,
    table: str,
    reports: list[FileReport],
) -> None:
    """Stage the files ``members`` ((position, link)) of one format in one scan."""
    rejects = f"{table}_rejects"
    source = _source([link for _, link in members], kind, rejects)
    schema = _schema(con, source, kind)
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
    position = f"CAST(split_part(parse_filename({_ident(FILE_COLUMN)}), '.', 1) AS INTEGER)"
    staged = f"{table}_all"
    try:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {staged} AS SELECT {position} AS f, "
            f"{user} AS user_id, {video} AS video_id, {micros} AS t, {watch} AS watch, "
            f"{sid} AS sid, {raw_time} AS raw_time, {raw_watch} AS raw_watch, "
            f"{problem} AS problem FROM {source}"
        )
    except duckdb.Error as error:
        raise FileProblem(f"cannot be read: {_first_line(error)}") from None
    try:
        counted = con.execute(
            f"SELECT f, count(*), count(problem) FROM {staged} GROUP BY f"
        ).fetchall()
        rows = {int(f): (int(n), int(bad)) for f, n, bad in counted}
        found: dict[int, list[Problem]] = {}
        if any(bad for _, bad in rows.values()):
            _collect_problems(con, staged, found)
        if kind == "csv":
            _collect_rejects(con, rejects, found)
        empty = []
        for index, _ in members:
            report = reports[index]
            report.rows, bad = rows.get(index, (0, 0))
            report.problems = found.get(index, [])
            report.events = report.rows - bad
            report.rows += sum(p.count for p in report.problems if p.reason.startswith("malformed"))
            if report.rows == 0:
                _failed(report, FileProblem("no events in the file (a header only, or no rows)"))
                empty.append(index)
        con.execute(
            f"INSERT INTO {table} SELECT f, user_id, video_id, t, watch, sid FROM {staged} "
            f"WHERE problem IS NULL AND f NOT IN (SELECT unnest(?::INTEGER[]))",
            [empty],
        )
    finally:
        con.execute(f"DROP TABLE IF EXISTS {staged}")
        for suffix in ("_errors", "_scans"):
            con.execute(f"DROP TABLE IF EXISTS {rejects}{suffix}")


def _collect_problems(
    con: duckdb.DuckDBPyConnection, staged: str, found: dict[int, list[Problem]]
) -> None:
    rows = con.execute(
        f"""
        WITH bad AS (
            SELECT f, problem, user_id, video_id, raw_time, raw_watch,
                   count(*) OVER (PARTITION BY f, problem) AS n,
                   row_number() OVER (
                       PARTITION BY f, problem ORDER BY user_id, video_id, raw_time
                   ) AS k
            FROM {staged} WHERE problem IS NOT NULL
        )
        SELECT f, problem, n, list(
            'user ' || coalesce(user_id, '?') || ', video ' || coalesce(video_id, '?')
            || ', timestamp ' || coalesce(raw_time, '?')
            || CASE WHEN raw_watch IS NULL THEN '' ELSE ', watch_seconds ' || raw_watch END
            ORDER BY k)
        FROM bad WHERE k <= {EXAMPLES} GROUP BY f, problem, n ORDER BY f, n DESC, problem
        """
    ).fetchall()
    for f, reason, count, examples in rows:
        problem = Problem(str(reason), int(count), [str(e) for e in examples])
        found.setdefault(int(f), []).append(problem)


def _collect_rejects(
    con: duckdb.DuckDBPyConnection, rejects: str, found: dict[int, list[Problem]]
) -> None:
    """Lines the CSV parser refused (wrong number of columns, bad quoting, not UTF-8)."""
    try:
        rows = con.execute(
            f"""
            SELECT CAST(split_part(parse_filename(s.file_path), '.', 1) AS INTEGER) AS f,
                   e.error_type, count(*),
                   list('line ' || e.line || ': ' || e.csv_line ORDER BY e.line)
            FROM (SELECT DISTINCT scan_id, file_id, line, error_type, csv_line
                  FROM {rejects}_errors) e
            JOIN {rejects}_scans s USING (scan_id, file_id)
            GROUP BY ALL ORDER BY f, e.error_type
            """
        ).fetchall()
    except duckdb.CatalogException:
        return  # no rejects table: nothing was refused
    for f, kind, count, examples in rows:
        reason = f"malformed CSV line ({str(kind).lower()})"
        problem = Problem(reason, int(count), [str(e) for e in examples][:EXAMPLES])
        found.setdefault(int(f), []).append(problem)
