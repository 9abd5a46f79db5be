"""``recsys ingest``: register videos (files, directories, manifests) and related pairs."""

from __future__ import annotations

import logging
from pathlib import Path

import typer
from rich.table import Table

from orchestration.cli.common import (
    console,
    fail,
    print_json,
    signature_default,
    with_database,
)
from recsys.db import Database
from recsys.ingest import FAILED, IngestItem, ingest_paths, load_related
from recsys.settings import Settings

log = logging.getLogger("recsys.ingest")
#: Without a terminal, a progress line is logged every this many videos.
LOG_EVERY = 50


@with_database
def ingest(
    settings: Settings,
    database: Database,
    paths: list[Path] = typer.Argument(
        None, help="Video files, directories (recursive) or manifest CSVs (file/uri column)."
    ),
    related: list[Path] = typer.Option(
        [], "--related", help="CSV of related pairs video_a,video_b[,weight][,source]."
    ),
    source: str = typer.Option(
        signature_default(load_related, "source"),
        "--source",
        help="Source name for related pairs without a source column.",
    ),
    workers: int = typer.Option(
        signature_default(ingest_paths, "workers"), "--workers", min=1, help="Files probed at once."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
) -> None:
    """Probe and register videos; exits non-zero only when something failed."""
    if not paths and not related:
        raise fail("give video paths, directories or manifests, and/or --related CSV files", 2)
    failed = False
    payload: dict[str, object] = {}
    related_reports: list[dict[str, object]] = []
    if paths:
        from recsys.progress import Progress

        with Progress(
            "ingest", unit="items", console=console, logger=log, log_every=LOG_EVERY
        ) as bar:

            def on_item(item: IngestItem) -> None:
                bar.advance()
                if item.outcome == FAILED:
                    console.print(f"[red]failed[/] {item.source}: {item.reason}")

            report = ingest_paths(settings, database, paths, workers=workers, progress=on_item)
        counts = report.counts()
        failed = failed or not report.ok
        payload["ingest"] = report.as_dict()
        if not as_json:
            table = Table(title="ingest")
            for name in counts:
                table.add_column(name, justify="right")
            table.add_row(*(str(v) for v in counts.values()))
            console.print(table)
    for csv_path in related:
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


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest)
