"""Event inputs taken literally: names with glob characters, one timestamp rule for every
format, a store whose creation failed, a directory of many files read together."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest

from recsys.db import Database
from recsys.events import EventOptions, EventStore, ingest_events
from recsys.events.store import store_path
from recsys.settings import Settings
from tests.events.logs import add_videos, at, write_csv
from tests.events.test_aggregate import LOG_A

OUT_OF_RANGE = "timestamp out of range (1970 to year 5138; epoch seconds 0 to 1e11)"


def _videos(store: EventStore) -> set[str]:
    return set(store.keys())


def test_a_file_name_with_glob_characters_is_read_literally(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    other = write_csv(tmp_path / "a1.csv", [("u1", "OTHER", at(0))])
    real = write_csv(tmp_path / "a[1].csv", [("u1", "REAL", at(0))])
    star = write_csv(tmp_path / "b*.csv", [("u2", "STAR", at(0))])
    options = EventOptions(source="glob")
    with EventStore.open(sqlite_settings, "glob") as store:
        first = store.add_file(real, options)
        assert first.status == "added" and first.events == 1
        assert _videos(store) == {"REAL"}
        assert store.add_file(star, options).events == 1
        assert _videos(store) == {"REAL", "STAR"}
        # The other file was never read under the first one's hash: it is new content.
        assert store.add_file(other, options).status == "added"
        assert _videos(store) == {"REAL", "STAR", "OTHER"}


def test_a_directory_name_with_glob_characters_is_scanned_literally(
    settings: Settings, database: Database, tmp_path: Path
) -> None:
    add_videos(database, ["v1", "v2", "v3", "v4", "NOPE"])
    literal = tmp_path / "logs[1]"
    decoy = tmp_path / "logs1"
    literal.mkdir()
    decoy.mkdir()
    write_csv(literal / "a.csv", LOG_A)
    write_csv(decoy / "a.csv", [("u9", "NOPE", at(0)), ("u9", "NOPE", at(1))])
    write_csv(literal / "._a.csv", [("u8", "NOPE", at(0))])  # hidden: skipped like a video's
    report = ingest_events(settings, database, [literal], EventOptions(min_support=1))
    assert [Path(f.path).parent.name for f in report.files] == ["logs[1]"]
    assert report.stored["events"] == len(LOG_A)
    with EventStore.open(settings, "events") as store:
        assert "NOPE" not in _videos(store)


def _parquet_times(path: Path, times: list[str]) -> Path:
    con = duckdb.connect()
    try:
        rows = ", ".join(f"('u{i}', 'v{i}', {t})" for i, t in enumerate(times))
        escaped = str(path).replace("'", "''")
        con.execute(
            f"COPY (SELECT * FROM (VALUES {rows}) AS t(user_id, video_id, timestamp)) "
            f"TO '{escaped}' (FORMAT parquet)"
        )
    finally:
        con.close()
    return path


def test_timestamp_bounds_are_one_rule_for_every_format(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    options = EventOptions(source="bounds")
    parquet = _parquet_times(
        tmp_path / "inf.parquet",
        [
            "'infinity'::TIMESTAMP",
            "'-infinity'::TIMESTAMP",
            "'2024-01-01'::TIMESTAMP",
            "'6000-01-01'::TIMESTAMP",
            "'1960-01-01'::TIMESTAMP",
        ],
    )
    dates = _parquet_times(tmp_path / "dates.parquet", ["'infinity'::DATE", "'2024-01-01'::DATE"])
    text = write_csv(
        tmp_path / "iso.csv",
        [
            ("u1", "v1", "294247-01-01T00:00:00Z"),  # an ISO year far past the epoch limit
            ("u2", "v2", "5000-01-01T00:00:00Z"),  # below 1e11 s: valid in both spellings
            ("u3", "v3", "95617584000"),  # 5000-01-01 as epoch seconds
            ("u4", "v4", "1960-01-01"),  # before the epoch, as numbers are refused
            ("u5", "v5", "infinity"),
        ],
    )
    with EventStore.open(sqlite_settings, "bounds") as store:
        by_file = {}
        for path in (parquet, dates, text):
            report = store.add_file(path, options)
            by_file[path.name] = ({p.reason: p.count for p in report.problems}, report.events)
    assert by_file["inf.parquet"] == ({OUT_OF_RANGE: 4}, 1)
    assert by_file["dates.parquet"] == ({OUT_OF_RANGE: 1}, 1)
    assert by_file["iso.csv"] == ({OUT_OF_RANGE: 3}, 2)


FILL_DISK = textwrap.dedent(
    """
    import resource, signal, sys
    from pathlib import Path
    from recsys.events import EventOptions, EventStore
    from recsys.settings import load_settings

    settings = load_settings(Path(sys.argv[1]))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))  # the disk is full at 4 KiB
    with EventStore.open(settings, "events") as store:
        store.add_file(Path(sys.argv[2]), EventOptions())
    """
)


def test_a_store_that_failed_to_be_created_is_removed(
    settings: Settings, database: Database, tmp_path: Path
) -> None:
    add_videos(database, ["v1", "v2", "v3", "v4"])
    log = write_csv(tmp_path / "a.csv", LOG_A)
    full = subprocess.run(
        [sys.executable, "-c", FILL_DISK, str(settings.resolved_home), str(log)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert full.returncode != 0
    assert "events store" in full.stderr and "could not be created" in full.stderr
    assert not store_path(settings, "events").exists()
    assert not store_path(settings, "events").with_suffix(".duckdb.wal").exists()
    report = ingest_events(settings, database, [log], EventOptions(min_support=1))
    assert report.ok and report.files[0].status == "added"
    assert report.related is not None and report.related.inserted == 4


def test_many_files_are_added_together_with_a_report_each(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    """A directory of hourly files is read in one scan; each file still gets its own report,
    and the counts equal those of the files added one by one."""
    logs = tmp_path / "hourly"
    logs.mkdir()
    for hour in range(40):
        rows = [(f"u{hour % 5}", f"v{(hour + k) % 7}", at(hour * 60 + k)) for k in range(3)]
        write_csv(logs / f"h{hour:03d}.csv", rows)
    write_csv(logs / "h_copy.csv", [("u0", "v0", at(0)), ("u0", "v1", at(1)), ("u0", "v2", at(2))])
    (logs / "h_bad.csv").write_text("user_id,video_id,timestamp\nu1,v1,yesterday\n")
    files = sorted(logs.iterdir())
    options = EventOptions(source="batch", min_support=1)
    one_by_one = EventOptions(source="single", min_support=1)
    with (
        EventStore.open(sqlite_settings, "batch") as batch,
        EventStore.open(sqlite_settings, "single") as single,
    ):
        together = batch.add_files(files, options)
        alone = [single.add_file(path, one_by_one) for path in files]
        assert [(r.path, r.status, r.events, r.added, r.duplicates) for r in together] == [
            (r.path, r.status, r.events, r.added, r.duplicates) for r in alone
        ]
        assert [r.problems for r in together] == [r.problems for r in alone]
        assert batch.stats() == single.stats()
        assert batch.totals() == single.totals()
        assert batch.related(options).as_dict() == single.related(one_by_one).as_dict()
        again = batch.add_files(files, options)
        assert {r.status for r in again} == {"unchanged"}


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_a_failing_file_in_a_batch_fails_alone(
    sqlite_settings: Settings, tmp_path: Path, kind: str
) -> None:
    good = [write_csv(tmp_path / f"g{i}.csv", [(f"u{i}", "v1", at(i))]) for i in range(3)]
    if kind == "parquet":
        good = [
            _parquet_times(tmp_path / f"p{i}.parquet", [f"'2024-01-0{i + 1}'::TIMESTAMP"])
            for i in range(3)
        ]
    broken = tmp_path / f"broken.{kind}"
    broken.write_bytes(b"PAR1 not really" if kind == "parquet" else b"a,b\n1,2\n")
    with EventStore.open(sqlite_settings, "mixed") as store:
        reports = store.add_files([good[0], broken, *good[1:]], EventOptions(source="mixed"))
    assert [r.status for r in reports] == ["added", "failed", "added", "added"]
    assert reports[1].error
