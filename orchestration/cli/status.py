"""``recsys status``: videos by status, embeddings per model version, active model and index."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from orchestration.cli.common import JsonOption, print_json, with_existing_database
from recsys.db import Database
from recsys.settings import Settings
from recsys.status import catalog_status


@with_existing_database
def status(
    settings: Settings,
    database: Database,
    as_json: JsonOption = False,
) -> None:
    """Show the catalog's state (reads only: creates nothing where nothing was ingested)."""
    report = catalog_status(settings, database)
    if as_json:
        print_json(report)
        return
    out = Console()
    out.print(f"home: {report['home']}  database: {report['database']}")
    videos = Table(title="videos")
    for key in report["videos"]:
        videos.add_column(key, justify="right")
    videos.add_row(*(str(v) for v in report["videos"].values()))
    out.print(videos)
    if report["models"]:
        models = Table(title="model versions")
        for column in (
            "model_version",
            "active",
            "fusion",
            "dim",
            "embedded",
            "outdated",
            "missing",
            "failed",
        ):
            models.add_column(column)
        for m in report["models"]:
            models.add_row(
                m["model_version"],
                "*" if m["is_active"] else "",
                str(m["fusion"]),
                str(m["dim"]),
                str(m["embedded"]),
                str(m["outdated"]),
                str(m["missing"]),
                str(m["failed"]),
            )
        out.print(models)
    else:
        out.print("no model versions yet (recsys train)")
    index = report["active_index"]
    if index:
        out.print(
            f"active index: {index['version']} (model {index['model_version']}, "
            f"{index['count']} vectors, {index['factory']}, recall@10 {index['recall_at_10']})"
        )
    else:
        out.print("no active index (recsys index build)")


def register(app: typer.Typer) -> None:
    app.command("status")(status)
