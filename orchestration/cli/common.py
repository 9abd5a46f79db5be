"""Options and helpers shared by every CLI command."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from recsys.db import Database, open_database
from recsys.settings import Settings, load_settings

HomeOption = Annotated[
    Path | None,
    typer.Option(
        "--home",
        help="State directory (database, features, embeddings, models, indexes). "
        "Default: `recsys --home`, else $RECSYS_HOME, else ./.recsys",
        show_default=False,
    ),
]

console = Console(stderr=True)
_global_home: Path | None = None


def set_global_home(home: Path | None) -> None:
    """Remember ``recsys --home X`` given before the command name."""
    global _global_home
    _global_home = home


def settings_for(home: Path | None) -> Settings:
    """Settings with a command's ``--home`` (or the global one) applied, directories created."""
    settings = load_settings(home if home is not None else _global_home)
    settings.ensure_dirs()
    return settings


def database_for(home: Path | None) -> tuple[Settings, Database]:
    settings = settings_for(home)
    return settings, open_database(settings)


def print_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def configure_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not verbose:
        for noisy in ("faiss.loader", "alembic"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print an error for the user and return the exit to raise."""
    console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)
