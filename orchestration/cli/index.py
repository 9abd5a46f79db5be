"""``recsys index``: build, list, inspect, activate (rollback) and update FAISS indexes."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import typer

from orchestration.cli.common import HomeOption, console, database_for, fail, print_json

app = typer.Typer(help="FAISS indexes: build, list, info, activate, update.", no_args_is_help=True)
log = logging.getLogger("recsys.index")
UPDATE_REBUILD_EXIT = 3


@contextmanager
def _progress() -> Iterator[Callable[[str], None]]:
    """A spinner with the current step on a terminal, log lines otherwise."""
    if console.is_terminal:
        with console.status("indexing…") as status:

            def show(message: str) -> None:
                status.update(message)
                console.log(message)

            yield show
    else:
        yield log.info


@app.command("build")
def build(
    home: HomeOption = None,
    model: str | None = typer.Option(None, "--model", help="Model version (default: active)."),
    kind: str = typer.Option(
        "auto", "--kind", help="auto | flat | ivfflat | hnsw | ivfpq | a faiss factory string."
    ),
    memory_budget: str = typer.Option("4G", "--memory-budget", help="Index memory, e.g. 4G."),
    gpu: str = typer.Option("auto", "--gpu", help="auto | on | off."),
    min_recall: float = typer.Option(
        0.95, "--min-recall", help="Refuse to publish below this recall@10 vs exact search."
    ),
    no_publish: bool = typer.Option(
        False, "--no-publish", help="Build and verify, but leave the served index as it is."
    ),
    queries: int = typer.Option(1000, "--queries", help="Held-out queries for the recall gate."),
    seed: int = typer.Option(0, "--seed", help="Seed of the training sample and queries."),
) -> None:
    """Build an index from a model version's embeddings; publish it if it passes the gate."""
    from index import BuildOptions, RecsysIndexError, build_index
    from recsys.store import StoreError

    settings, database = database_for(home)
    options = BuildOptions(
        model_version=model,
        kind=kind,
        memory_budget=memory_budget,
        gpu=gpu,
        min_recall=min_recall,
        publish=not no_publish,
        queries=queries,
        seed=seed,
    )
    try:
        with _progress() as progress:
            result = build_index(settings, database, options, progress)
    except (RecsysIndexError, StoreError) as error:
        raise fail(str(error)) from error
    finally:
        database.dispose()
    payload = result.as_dict()
    payload.pop("manifest", None)
    print_json(payload)


@app.command("list")
def list_(home: HomeOption = None) -> None:
    """Every build, newest first, with the active one marked."""
    from index import list_indexes

    settings, database = database_for(home)
    try:
        entries = list_indexes(settings, database)
    finally:
        database.dispose()
    print_json(entries)


@app.command("info")
def info(
    version: str | None = typer.Argument(None, help="Index version (default: the active one)."),
    home: HomeOption = None,
) -> None:
    """Manifest, database record and checksum state of one index version."""
    from index import RecsysIndexError, index_info

    settings, database = database_for(home)
    try:
        payload: dict[str, Any] = index_info(settings, database, version)
    except (RecsysIndexError, ValueError) as error:
        raise fail(str(error)) from error
    finally:
        database.dispose()
    print_json(payload)


@app.command("activate")
def activate(
    version: str = typer.Argument(..., help="Index version to serve (rollback: an older one)."),
    home: HomeOption = None,
) -> None:
    """Verify an index version and make it the served one; a bad one is refused."""
    from index import RecsysIndexError, activate_index

    settings, database = database_for(home)
    try:
        loaded = activate_index(settings, database, version)
    except RecsysIndexError as error:
        raise fail(str(error)) from error
    finally:
        database.dispose()
    console.print(
        f"index {loaded.version} is active ({loaded.ntotal} vectors, model {loaded.model_version})"
    )
    print_json({"version": loaded.version, "model_version": loaded.model_version})


@app.command("update")
def update(
    home: HomeOption = None,
    min_recall: float | None = typer.Option(
        None, "--min-recall", help="Recall gate (default: the one the index was built with)."
    ),
) -> None:
    """Remove deleted/failed videos and add newly embedded ones to the active index.

    Exits with code 3 when only a full rebuild (`recsys index build`) can bring it up to date.
    """
    from index import RecsysIndexError, update_index
    from recsys.store import StoreError

    settings, database = database_for(home)
    try:
        result = update_index(settings, database, min_recall=min_recall)
    except (RecsysIndexError, StoreError) as error:
        raise fail(str(error)) from error
    finally:
        database.dispose()
    print_json(result.as_dict())
    if result.rebuild_needed:
        console.print(f"[yellow]rebuild needed:[/] {result.reason}")
        if result.version is None:
            raise typer.Exit(UPDATE_REBUILD_EXIT)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="index")
