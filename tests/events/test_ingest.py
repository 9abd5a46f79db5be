"""Event files in: formats, bad input, the incremental store, related_pairs, the CLI."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from orchestration.cli.main import app
from recsys.db import Database
from recsys.events import EventOptions, EventStore, ingest_events, refresh_related
from recsys.settings import Settings
from recsys.synth import write_test_video
from recsys.synth.events import write_parquet
from tests.events.logs import (
    T0,
    add_videos,
    at,
    epoch,
    pair_rows,
    stored_pairs,
    write_csv,
    write_events_parquet,
)
from tests.events.test_aggregate import LOG_A

VIDEOS = ["v1", "v2", "v3", "v4"]


def _graph(settings: Settings, source: str, files: list[Path], **options: object) -> dict:  # type: ignore[type-arg]
    opts = EventOptions(source=source, min_support=1, **options)  # type: ignore[arg-type]
    with EventStore.open(settings, source) as store:
        for path in files:
            store.add_file(path, opts)
        return store.related(opts).as_dict()


def _invoke(settings: Settings, *args: str):  # type: ignore[no-untyped-def]
    env = {"RECSYS_DATABASE_URL": settings.database_url or "", "COLUMNS": "200"}
    home = ["--home", str(settings.resolved_home)]
    return CliRunner().invoke(app, ["ingest", *args, *home], env=env)


def test_csv_parquet_and_epoch_seconds_give_the_same_graph(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    iso = _graph(sqlite_settings, "iso", [write_csv(tmp_path / "a.csv", LOG_A)])
    parquet = _graph(sqlite_settings, "pq", [write_events_parquet(tmp_path / "a.parquet", LOG_A)])
    minutes = {at(m): m for m in (0, 5, 10, 20, 40, 100, 110)}
    as_epoch = [(u, v, epoch(minutes[str(t)])) for u, v, t in LOG_A]
    numbers = _graph(sqlite_settings, "epoch", [write_csv(tmp_path / "e.csv", as_epoch)])
    assert iso == parquet == numbers and len(iso) == 4


def test_incremental_add_equals_one_shot_on_the_concatenation(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    # The second file continues u1's first session (v5 at minute 15, out of time order),
    # brings u3's later events, repeats one event, and pushes u1 over the cap of 6.
    first = [r for r in LOG_A if r[0] != "u3" and r[2] < at(50)]
    second = [r for r in LOG_A if r not in first] + [
        ("u1", "v5", at(15)),
        ("u1", "v1", at(0)),
        ("u1", "v7", at(-200)),  # u1's oldest event: the one the cap of 6 leaves out
    ]
    one = write_csv(tmp_path / "one.csv", first)
    two = write_csv(tmp_path / "two.csv", second)
    both = write_csv(tmp_path / "both.csv", first + second)
    options = {"user_cap": 6, "alpha": 0.0}
    incremental = _graph(sqlite_settings, "inc", [one, two], **options)
    oneshot = _graph(sqlite_settings, "all", [both], **options)
    assert incremental == oneshot
    # Counted in batches of a few users each (the memory bound): the same graph.
    assert _graph(sqlite_settings, "small", [one, two], batch_events=4, **options) == oneshot
    assert incremental[("v1", "v5")] == 1  # v5 joined the session that file one started
    with (
        EventStore.open(sqlite_settings, "inc") as a,
        EventStore.open(sqlite_settings, "all") as b,
    ):
        assert a.totals() == b.totals() and a.totals()["capped_users"] == 1
        assert a.stats()["events"] == b.stats()["events"] == len(LOG_A) + 2
    assert ("v1", "v7") not in incremental


def test_reingesting_a_file_changes_nothing(
    settings: Settings, database: Database, tmp_path: Path
) -> None:
    add_videos(database, VIDEOS)
    path = write_csv(tmp_path / "a.csv", LOG_A)
    options = EventOptions(min_support=1)
    first = ingest_events(settings, database, [path], options)
    assert first.ok and first.files[0].status == "added" and first.files[0].added == len(LOG_A)
    assert first.related is not None and first.related.inserted == 4
    rows = pair_rows(database)
    copy = tmp_path / "copy.csv"
    copy.write_bytes(path.read_bytes())  # the same content under another name
    again = ingest_events(settings, database, [path, copy], options)
    assert [f.status for f in again.files] == ["unchanged", "unchanged"]
    assert again.files[1].previously == str(path)
    assert again.related is not None and again.related.unchanged == 4
    assert again.related.inserted == again.related.updated == again.related.removed == 0
    assert pair_rows(database) == rows
    assert again.stored == first.stored


def test_a_new_graph_replaces_the_sources_pairs(
    settings: Settings, database: Database, tmp_path: Path
) -> None:
    add_videos(database, VIDEOS)
    path = write_csv(tmp_path / "a.csv", LOG_A)
    ingest_events(settings, database, [path], EventOptions(min_support=1))
    assert len(stored_pairs(database)) == 4
    stricter = ingest_events(settings, database, [path], EventOptions(min_support=2))
    assert stricter.related is not None and stricter.related.removed == 3
    assert set(stored_pairs(database)) == {("v1", "v2")}
    assert stored_pairs(database)[("v1", "v2")] == pytest.approx(2 / 3)


def test_unknown_videos_are_counted_kept_and_join_later(
    settings: Settings, database: Database, tmp_path: Path
) -> None:
    add_videos(database, ["v1", "v2", "v3"])  # v4 is not in the catalog yet
    report = ingest_events(
        settings, database, [write_csv(tmp_path / "a.csv", LOG_A)], EventOptions(min_support=1)
    )
    assert report.ok  # unknown videos are not a failure: their events are kept
    assert report.related is not None
    assert (report.related.unknown_videos, report.related.unknown_events) == (1, 1)
    assert report.related.unknown_examples == ["v4"]
    assert set(stored_pairs(database)) == {("v1", "v2"), ("v1", "v3"), ("v2", "v3")}
    add_videos(database, ["v4"])
    (joined,) = refresh_related(settings, database)
    assert joined.inserted == 1 and joined.unknown_videos == 0
    assert stored_pairs(database)[("v1", "v4")] == pytest.approx(1 / 3**0.5)


def test_a_video_ingested_by_the_cli_joins_the_events_graph(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    from recsys.db import open_database

    database = open_database(sqlite_settings)
    try:
        add_videos(database, ["v1", "v2", "v3"])
        csv_path = write_csv(tmp_path / "a.csv", LOG_A)
        first = _invoke(sqlite_settings, "--events", str(csv_path), "--min-support", "1")
        assert first.exit_code == 0, first.output
        assert "1 videos not in the catalog" in first.output and "v4" in first.output
        clip = write_test_video(tmp_path / "v4.mp4", seconds=0.5, width=32, height=24, fps=4)
        second = _invoke(sqlite_settings, str(clip))
        assert second.exit_code == 0, second.output
        assert "related pairs (events): 4 (1 new" in " ".join(second.output.split())
        assert ("v1", "v4") in stored_pairs(database)
    finally:
        database.dispose()


def test_bad_rows_are_counted_with_reasons_and_nothing_valid_is_dropped(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    good = [(u, v, t, "") for u, v, t in LOG_A]
    bad = [
        ("u9", "v1", "yesterday", ""),
        ("u9", "v2", "2024-13-45T99:00:00", ""),
        ("u9", "v3", "1709280000000", ""),  # epoch milliseconds
        ("", "v1", at(1), ""),
        ("u9", "", at(1), ""),
        ("u9", "v1", "", ""),
        ("u9", "v2", at(2), "-4"),
        ("u9", "v3", at(3), "long"),
        ("u9", "x" * 300, at(4), ""),
    ]
    path = write_csv(tmp_path / "mixed.csv", good[:4] + bad + good[4:])
    with path.open("a", encoding="utf-8") as handle:
        handle.write("u9,v1,2024-03-01T09:00:00Z,1,surplus\n")  # too many columns
    with path.open("ab") as handle:
        handle.write(b"u9,v\xff\xfe,2024-03-01T09:00:00Z,\n")  # not UTF-8
    options = EventOptions(source="mixed", min_support=1)
    with EventStore.open(sqlite_settings, "mixed") as store:
        report = store.add_file(path, options)
        mixed = store.related(options).as_dict()
    reasons = {p.reason: p.count for p in report.problems}
    assert reasons == {
        "unparsable timestamp (not ISO 8601 or epoch seconds)": 2,
        "timestamp too large for epoch seconds (milliseconds? divide by 1000)": 1,
        "empty user_id": 1,
        "empty video_id": 1,
        "empty timestamp": 1,
        "watch_seconds is negative or not finite": 1,
        "watch_seconds is not a number": 1,
        "video_id longer than 255 characters": 1,
        "malformed CSV line (too many columns)": 1,
        "malformed CSV line (invalid encoding)": 1,
    }
    examples = {p.reason: p.examples for p in report.problems}
    unparsable = examples["unparsable timestamp (not ISO 8601 or epoch seconds)"]
    assert "user u9, video v1, timestamp yesterday" in unparsable
    assert examples["malformed CSV line (too many columns)"][0].startswith("line 20: u9,v1")
    assert report.rows == len(good) + len(bad) + 2
    assert report.events == report.added == len(good) and report.bad_rows == len(bad) + 2
    clean = _graph(sqlite_settings, "clean", [write_csv(tmp_path / "clean.csv", LOG_A)])
    assert mixed == clean


def test_duplicates_are_counted_once(sqlite_settings: Settings, tmp_path: Path) -> None:
    doubled = write_csv(tmp_path / "d.csv", [*LOG_A, LOG_A[0], LOG_A[1]])
    options = EventOptions(source="dup", min_support=1)
    with EventStore.open(sqlite_settings, "dup") as store:
        first = store.add_file(doubled, options)
        overlap = store.add_file(write_csv(tmp_path / "o.csv", LOG_A[:3]), options)
        graph = store.related(options).as_dict()
    assert (first.events, first.added, first.duplicates) == (len(LOG_A) + 2, len(LOG_A), 2)
    assert (overlap.added, overlap.duplicates) == (0, 3)
    assert graph == _graph(sqlite_settings, "nodup", [write_csv(tmp_path / "a.csv", LOG_A)])


def test_unusable_files_are_reported_and_the_others_go_on(
    settings: Settings, database: Database, tmp_path: Path
) -> None:
    add_videos(database, VIDEOS)
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    header_only = tmp_path / "header.csv"
    header_only.write_text("user_id,video_id,timestamp\n", encoding="utf-8")
    wrong = tmp_path / "wrong.parquet"
    write_parquet(
        {"uid": np.array(["u1"], dtype=object)},
        "uid, uid AS vid, 1.5 AS ts",
        wrong,
    )
    typed = tmp_path / "typed.parquet"
    write_parquet(
        {"u": np.array(["u1"], dtype=object)},
        "u AS user_id, 'v1' AS video_id, true AS timestamp",
        typed,
    )
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 not really parquet")
    good = write_csv(tmp_path / "good.csv", LOG_A)
    files = [empty, header_only, wrong, typed, broken, tmp_path / "absent.csv", good]
    report = ingest_events(settings, database, files, EventOptions(min_support=1))
    errors = {Path(f.path).name: f.error or "" for f in report.files}
    assert [f.status for f in report.files] == ["failed"] * 6 + ["added"]
    assert "empty file (0 bytes)" in errors["empty.csv"]
    assert "no events in the file" in errors["header.csv"]
    assert "missing column(s) user_id (as 'user_id'), video_id" in errors["wrong.parquet"]
    assert "the file has: uid, vid, ts" in errors["wrong.parquet"]
    assert "--column user_id=NAME" in errors["wrong.parquet"]
    assert "type BOOLEAN" in errors["typed.parquet"]
    assert "not a readable Parquet file" in errors["broken.parquet"]
    assert errors["absent.csv"] == "file not found"
    assert not report.ok and len(stored_pairs(database)) == 4  # the good file went in
    mapped = ingest_events(
        settings,
        database,
        [wrong],
        EventOptions(
            source="mapped", columns={"user_id": "uid", "video_id": "vid", "timestamp": "ts"}
        ),
    )
    assert mapped.files[0].status == "added" and mapped.files[0].events == 1


def test_cli_ingest_events_report_json_and_usage_errors(
    settings: Settings, database: Database, tmp_path: Path
) -> None:
    add_videos(database, VIDEOS)
    rows = [(u, v, t, "") for u, v, t in LOG_A] + [("u9", "v1", "soon", "")]
    path = write_csv(tmp_path / "a.csv", rows, ["uid", "video_id", "timestamp", "watch_seconds"])
    result = _invoke(
        settings,
        "--events",
        str(path),
        "--column",
        "user_id=uid",
        "--window",
        "1h",
        "--alpha",
        "0",
        "--min-support",
        "2",
        "--json",
    )
    assert result.exit_code == 1, result.output  # a bad row: reported, the rest went in
    payload = json.loads(result.stdout)["events"]
    assert payload["options"]["cowatch"] == "window" and payload["options"]["window_s"] == 3600
    (item,) = payload["files"]
    assert (item["events"], item["bad_rows"]) == (len(LOG_A), 1)
    assert payload["related"]["pairs"] == 2 and payload["counts"]["baskets"] == 3
    assert stored_pairs(database) == {("v1", "v2"): 2.0, ("v2", "v3"): 2.0}
    text = _invoke(settings, "--events", str(path), "--column", "user_id=uid", "--window", "1h")
    flat = " ".join(text.output.split())
    assert "unchanged (this content was ingested from" in flat
    assert "co-watch (window, window 1h)" in flat and text.exit_code == 0
    usage = [
        (["--events", str(path), "--window", "1h", "--cowatch", "session"], "--window"),
        (["--events", str(path), "--column", "watcher=uid"], "unknown event column 'watcher'"),
        (["--events", str(path), "--session-gap", "soon"], "is not a duration"),
        (["--events"], "--events needs the event files"),
    ]
    for args, message in usage:
        bad = _invoke(settings, *args)
        assert bad.exit_code == 2, bad.output
        assert message in " ".join(bad.output.split())


def test_batches_counted_in_threads_give_the_same_graph(
    sqlite_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the parallel threshold, batches are counted on every core: same graph, same totals
    (the incremental path's temp tables included)."""
    import recsys.events.store as store_module

    first = [r for r in LOG_A if r[2] < at(50)]
    second = [r for r in LOG_A if r not in first] + [("u1", "v5", at(15))]
    files = [write_csv(tmp_path / "a.csv", first), write_csv(tmp_path / "b.csv", second)]
    serial = _graph(sqlite_settings, "serial", files, batch_events=3)
    monkeypatch.setattr(store_module, "PARALLEL_MIN_EVENTS", 0)
    monkeypatch.setattr(store_module.os, "cpu_count", lambda: 3)
    threaded = _graph(sqlite_settings, "threaded", files, batch_events=3)
    assert threaded == serial and threaded[("v1", "v5")] > 0
    with (
        EventStore.open(sqlite_settings, "serial") as a,
        EventStore.open(sqlite_settings, "threaded") as b,
    ):
        assert a.totals() == b.totals()
        cut = T0 + timedelta(minutes=50)
        options = EventOptions(batch_events=3, min_support=1)
        assert b.related(options, before=cut).as_dict() == a.related(options, before=cut).as_dict()
