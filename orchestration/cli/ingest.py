"""``recsys ingest``: register videos (files, directories, manifests), related pairs, and watch
events (``--events``: the PATHS are event logs, aggregated into the co-watch graph)."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from orchestration.cli.common import (
    Default,
    JsonOption,
    console,
    fail,
    print_json,
    signature_default,
    with_database,
)
from recsys.choices import Cowatch, Engine, Normalise
from recsys.db import Database
from recsys.ingest import ALIAS, FAILED, IngestItem, ingest_paths, load_related
from recsys.settings import Settings

if TYPE_CHECKING:
    from recsys.events import EventOptions, EventsReport, RelatedResult

log = logging.getLogger("recsys.ingest")
#: Without a terminal, a progress line is logged every this many videos.
LOG_EVERY = 50
EVENTS = "recsys.events.options:EventOptions"


@with_database
def ingest(
    settings: Settings,
    database: Database,
    paths: list[Path] = typer.Argument(
        None,
        help="Video files, directories (recursive) or manifest CSVs (file/uri column); "
        "with --events: watch-event files (CSV or Parquet) or directories of them.",
    ),
    related: list[Path] = typer.Option(
        [], "--related", help="CSV of related pairs video_a,video_b[,weight][,source]."
    ),
    source: str | None = typer.Option(
        None,
        "--source",
        help="Source name of the pairs written: --related rows without a source column "
        f"(default {signature_default(load_related, 'source')}); --events: the graph's source "
        "and aggregate store (default events).",
        show_default=False,
    ),
    workers: int = typer.Option(
        signature_default(ingest_paths, "workers"), "--workers", min=1, help="Files probed at once."
    ),
    allow_copies: bool = typer.Option(
        signature_default(ingest_paths, "allow_copies"),
        "--allow-copies",
        help="Register a file with the bytes of a registered video as a video of its own "
        "(default: one video per content; a copy is recorded as an alias of it).",
    ),
    events: bool = typer.Option(
        False,
        "--events",
        help="PATHS are watch-event logs (user_id, video_id, timestamp[, watch_seconds, "
        "session_id]): add them to the co-watch counts and refresh the related pairs.",
    ),
    cowatch: Cowatch | None = typer.Option(
        None,
        "--cowatch",
        help="Watched together = in one session (inactivity gap) or within a time window. "
        "Default: window when --window is given, else session.",
        show_default=False,
    ),
    session_gap: str | None = typer.Option(
        None,
        "--session-gap",
        help="Inactivity that ends a session: seconds or 30m, 2h, 1d (default 30m).",
        show_default=False,
    ),
    window: str | None = typer.Option(
        None,
        "--window",
        help="Co-watch window with --cowatch window: seconds or 6h, 24h, 7d (default 24h).",
        show_default=False,
    ),
    min_watch_s: float = typer.Option(
        Default(EVENTS, "min_watch_s"),
        "--min-watch-s",
        min=0.0,
        help="Events watched fewer seconds are not counted (events without watch_seconds are).",
    ),
    normalise: Normalise = typer.Option(
        Default(EVENTS, "normalise"),
        "--normalise",
        help="Relatedness: power = c_ij / (c_i c_j)^alpha; pmi = log(c_ij N / (c_i c_j)), "
        "positive only.",
    ),
    alpha: float = typer.Option(
        Default(EVENTS, "alpha"),
        "--alpha",
        min=0.0,
        help="Popularity exponent of --normalise power (0.5: cosine, 1: lift).",
    ),
    min_support: int = typer.Option(
        Default(EVENTS, "min_support"),
        "--min-support",
        min=1,
        help="Pairs co-watched fewer times are dropped.",
    ),
    top_n: int = typer.Option(
        Default(EVENTS, "top_n"), "--top-n", min=1, help="Partners kept per video."
    ),
    user_cap: int = typer.Option(
        Default(EVENTS, "user_cap"),
        "--user-cap",
        min=0,
        help="Events counted per user, their latest (bots, shared accounts); 0: no cap.",
    ),
    column: list[str] = typer.Option(
        [],
        "--column",
        help="Map a column: OURS=THEIRS, e.g. --column user_id=uid --column timestamp=ts "
        "(ours: user_id, video_id, timestamp, watch_seconds, session_id).",
    ),
    engine: Engine = typer.Option(
        Default(EVENTS, "engine"),
        "--engine",
        help="With --events: count co-watches in this process (DuckDB) or on Ray Data "
        "(RAY_ADDRESS or a local instance; same results).",
    ),
    as_json: JsonOption = False,
) -> None:
    """Probe and register videos; exits non-zero only when something failed."""
    if events and not paths:
        raise fail("--events needs the event files (CSV or Parquet) as PATHS", 2)
    if not paths and not related:
        raise fail("give video paths, directories or manifests, and/or --related CSV files", 2)
    failed = False
    payload: dict[str, object] = {}
    related_reports: list[dict[str, object]] = []
    if events:
        options = _event_options(
            source,
            cowatch,
            session_gap,
            window,
            min_watch_s,
            normalise,
            alpha,
            min_support,
            top_n,
            user_cap,
            column,
            engine,
        )
        from recsys.events import ingest_events

        events_report = ingest_events(settings, database, paths, options)
        failed = not events_report.ok
        payload["events"] = events_report.as_dict()
        if not as_json:
            _print_events(events_report)
    elif paths:
        from recsys.progress import Progress

        with Progress(
            "ingest", unit="items", console=console, logger=log, log_every=LOG_EVERY
        ) as bar:

            def on_item(item: IngestItem) -> None:
                bar.advance()
                if item.outcome == FAILED:
                    console.print(f"[red]failed[/] {item.source}: {item.reason}")
                elif item.outcome == ALIAS:
                    console.print(f"[yellow]alias[/] {escape(f'{item.source}: {item.reason}')}")

            report = ingest_paths(
                settings,
                database,
                paths,
                workers=workers,
                allow_copies=allow_copies,
                progress=on_item,
            )
        counts = report.counts()
        failed = failed or not report.ok
        payload["ingest"] = report.as_dict()
        if not as_json:
            table = Table(title="ingest")
            for name in counts:
                table.add_column(name, justify="right")
            table.add_row(*(str(v) for v in counts.values()))
            console.print(table)
        if counts.get("added"):
            joined = _rejoin_events(settings, database, as_json)
            if joined:
                payload["events_related"] = joined
    for csv_path in related:
        if source is None:
            result = load_related(settings, database, csv_path)
        else:
            result = load_related(settings, database, csv_path, source=source)
        failed = failed or not result.ok
        related_reports.append(result.as_dict())
        payload["related"] = related_reports
        if not as_json:
            console.print(
                f"related {csv_path}: {result.pairs} pairs ({result.inserted} new, "
                f"{result.updated} updated, {result.unchanged} unchanged), "
                f"{result.self_pairs} self-pairs skipped"
            )
            if result.unknown_ids:
                shown = ", ".join(result.unknown_ids[:10])
                more = len(result.unknown_ids) - 10
                console.print(
                    f"[yellow]{len(result.unknown_ids)} unknown video ids[/]: {shown}"
                    + (f" (+{more} more)" if more > 0 else "")
                )
            for problem in result.bad_rows:
                console.print(f"[red]bad row[/] {problem}")
    if as_json:
        print_json(payload)
    if failed:
        raise typer.Exit(1)


def _event_options(
    source: str | None,
    cowatch: Cowatch | None,
    session_gap: str | None,
    window: str | None,
    min_watch_s: float,
    normalise: Normalise,
    alpha: float,
    min_support: int,
    top_n: int,
    user_cap: int,
    column: list[str],
    engine: Engine = Engine.LOCAL,
) -> EventOptions:
    """The library's options from the flags (a bad value is a usage error, exit 2)."""
    from recsys.events import EventOptionError, EventOptions

    mode = cowatch or (Cowatch.WINDOW if window is not None else Cowatch.SESSION)
    if mode == Cowatch.SESSION and window is not None:
        raise typer.BadParameter("applies to --cowatch window only", param_hint="--window")
    if mode == Cowatch.WINDOW and session_gap is not None:
        raise typer.BadParameter("applies to --cowatch session only", param_hint="--session-gap")
    chosen: dict[str, object] = {}
    if source is not None:
        chosen["source"] = source
    if session_gap is not None:
        chosen["session_gap_s"] = session_gap
    if window is not None:
        chosen["window_s"] = window
    try:
        return EventOptions(
            cowatch=mode,
            min_watch_s=min_watch_s,
            normalise=normalise,
            alpha=alpha,
            min_support=min_support,
            top_n=top_n,
            user_cap=user_cap,
            engine=engine,
            columns=column,  # type: ignore[arg-type]  # parsed from OURS=THEIRS
            **chosen,  # type: ignore[arg-type]
        )
    except EventOptionError as error:
        raise fail(str(error), 2) from None


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _print_events(report: EventsReport) -> None:
    for item in report.files:
        if item.status == "failed":
            console.print(f"[red]failed[/] events {item.path}: {item.error}")
            continue
        if item.status == "unchanged":
            console.print(
                f"events {item.path}: unchanged (this content was ingested from "
                f"{item.previously}), nothing added"
            )
        else:
            console.print(
                f"events {item.path}: {item.events} events ({item.added} new, "
                f"{item.duplicates} duplicates), {item.bad_rows} bad rows of {item.rows}"
            )
        for problem in item.problems:
            shown = "; ".join(problem.examples)
            console.print(f"  [red]{problem.count} x[/] {problem.reason}: e.g. {shown}")
    options = report.options
    mode = str(options["cowatch"])
    span = options["session_gap_s"] if mode == "session" else options["window_s"]
    label = "gap" if mode == "session" else "window"
    counts, stored = report.counts, report.stored
    console.print(
        f"co-watch ({mode}, {label} {_duration(float(span))}): {stored.get('events', 0)} events "
        f"stored from {stored.get('files', 0)} files, {counts.get('events', 0)} counted in "
        f"{counts.get('baskets', 0)} baskets, {report.cowatched_pairs} pairs co-watched"
        + (" (recounted: the count options changed)" if report.recounted else "")
    )
    if counts.get("capped_users"):
        console.print(
            f"[yellow]{counts['capped_users']} users over the cap[/] of {options['user_cap']} "
            f"events: {counts['capped_events']} of their oldest events not counted"
        )
    if counts.get("long_baskets"):
        from recsys.events.aggregate import MAX_BASKET as most

        console.print(
            f"[yellow]{counts['long_baskets']} overlong baskets[/] (sessions over {most} events "
            f"cut into pieces, or events with over {most} later events in their window)"
        )
    if counts.get("short_events"):
        console.print(
            f"{counts['short_events']} events watched under {options['min_watch_s']:g} s "
            "not counted"
        )
    if report.related is not None:
        _print_related(report.related)


def _print_related(related: RelatedResult) -> None:
    console.print(
        f"related pairs ({related.source}): {related.pairs} ({related.inserted} new, "
        f"{related.updated} updated, {related.unchanged} unchanged, {related.removed} removed) "
        f"-> {related.pairs_file}"
    )
    if related.unknown_videos:
        shown = ", ".join(related.unknown_examples)
        more = related.unknown_videos - len(related.unknown_examples)
        console.print(
            f"[yellow]{related.unknown_videos} videos not in the catalog[/] "
            f"({related.unknown_events} events, kept: their pairs join when they are "
            f"ingested): {shown}" + (f" (+{more} more)" if more > 0 else "")
        )
    for problem in related.problems:
        console.print(f"[red]related[/] {problem}")


def _rejoin_events(settings: Settings, database: Database, quiet: bool) -> list[object]:
    """After new videos: materialise every events graph again, so their pairs join."""
    from recsys.events import refresh_related, store_sources

    if not store_sources(settings):
        return []
    results = refresh_related(settings, database)
    if not quiet:
        for result in results:
            _print_related(result)
    return [asdict(r) for r in results]


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest)
