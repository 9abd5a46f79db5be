"""``recsys index``: build, list, inspect, activate (rollback) and update FAISS indexes."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import typer

from orchestration.cli.common import (
    Default,
    ModelOption,
    choices_metavar,
    console,
    deprecated,
    print_json,
    with_database,
    with_existing_database,
)
from recsys.choices import GpuMode, IndexKind
from recsys.db import Database
from recsys.progress import steps
from recsys.settings import Settings

app = typer.Typer(help="FAISS indexes: build, list, info, activate, update.", no_args_is_help=True)
log = logging.getLogger("recsys.index")
UPDATE_REBUILD_EXIT = 3
OPTIONS = "index:BuildOptions"


def _kind(value: str) -> str:
    """A named :class:`IndexKind`, or (deprecated) a faiss factory string given to ``--kind``."""
    if isinstance(value, IndexKind):
        return value
    text = value.strip()
    try:
        return IndexKind(text.lower())
    except ValueError:
        pass
    if text[:1].isupper():  # faiss factory strings start with a capital: Flat, IVF…, HNSW…, OPQ…
        deprecated(f"--kind {text}", f"--factory {text}")
        return text
    allowed = ", ".join(kind.value for kind in IndexKind)
    raise typer.BadParameter(
        f"{value!r} is not one of {allowed} (a faiss factory string goes in --factory)"
    )


@app.command("build")
@with_database
def build(
    settings: Settings,
    database: Database,
    model: ModelOption = None,
    kind: str = typer.Option(
        Default(OPTIONS, "kind"),
        "--kind",
        parser=_kind,
        metavar=choices_metavar(IndexKind),
        help="Named index kind; auto chooses from the vector count and --memory-budget.",
    ),
    factory: str | None = typer.Option(
        None,
        "--factory",
        help="A faiss index factory string instead of a named --kind, e.g. IVF1024,SQ8.",
        show_default=False,
    ),
    memory_budget: str = typer.Option(
        Default(OPTIONS, "memory_budget"), "--memory-budget", help="Index memory, e.g. 4G."
    ),
    gpu: GpuMode = typer.Option(
        Default(OPTIONS, "gpu"),
        "--gpu",
        help="Build on a GPU: when faiss sees one (auto), always (on) or never (off).",
    ),
    min_recall: float = typer.Option(
        Default(OPTIONS, "min_recall"),
        "--min-recall",
        help="Refuse to publish below this recall@10 vs exact search.",
    ),
    no_publish: bool = typer.Option(
        False, "--no-publish", help="Build and verify, but leave the served index as it is."
    ),
    queries: int = typer.Option(
        Default(OPTIONS, "queries"), "--queries", help="Held-out queries for the recall gate."
    ),
    seed: int = typer.Option(
        Default(OPTIONS, "seed"), "--seed", help="Seed of the training sample and queries."
    ),
) -> None:
    """Build an index from a model version's embeddings; publish it if it passes the gate."""
    from index import BuildOptions, build_index

    named = IndexKind.AUTO
    if isinstance(kind, IndexKind):
        named = kind
    elif factory is None:  # the deprecated `--kind FACTORY` (the parser said so)
        factory = kind
    else:
        raise typer.BadParameter("give the factory string once, to --factory", param_hint="--kind")
    options = BuildOptions(
        model_version=model,
        kind=named,
        factory=factory,  # BuildOptions refuses a factory beside a kind other than auto
        memory_budget=memory_budget,
        gpu=gpu,
        min_recall=min_recall,
        publish=not no_publish,
        queries=queries,
        seed=seed,
    )
    with steps("indexing…", console=console, logger=log) as progress:
        result = build_index(settings, database, options, progress)
    payload = result.as_dict()
    payload.pop("manifest", None)
    print_json(payload)


@app.command("list")
@with_existing_database
def list_(settings: Settings, database: Database) -> None:
    """Every build, newest first, with the active one marked."""
    from index import list_indexes

    print_json(list_indexes(settings, database))


@app.command("info")
@with_existing_database
def info(
    settings: Settings,
    database: Database,
    version: str | None = typer.Argument(None, help="Index version (default: the active one)."),
) -> None:
    """Manifest, database record and checksum state of one index version."""
    from index import index_info

    payload: dict[str, Any] = index_info(settings, database, version)
    print_json(payload)


@app.command("activate")
@with_database
def activate(
    settings: Settings,
    database: Database,
    version: str = typer.Argument(..., help="Index version to serve (rollback: an older one)."),
    force: bool = typer.Option(
        False,
        "--force",
        help="Also serve a build that was kept aside because newer embeddings were served "
        "when it finished (status superseded). Checks of the files and model still apply.",
    ),
) -> None:
    """Verify an index version and make it the served one; a bad one is refused."""
    from index import activate_index

    loaded = activate_index(settings, database, version, force=force)
    console.print(
        f"index {loaded.version} is active ({loaded.ntotal} vectors, model {loaded.model_version})"
    )
    print_json({"version": loaded.version, "model_version": loaded.model_version})


@app.command("update")
@with_database
def update(
    settings: Settings,
    database: Database,
    min_recall: float | None = typer.Option(
        None, "--min-recall", help="Recall gate (default: the one the index was built with)."
    ),
) -> None:
    """Remove deleted/failed videos and add newly embedded ones to the active index.

    Exits with code 3 when only a full rebuild (`recsys index build`) can bring it up to date.
    """
    from index import GateOptions, UpdateOptions, active_manifest, update_index

    gate = None  # None: the gate the active index passed
    if min_recall is not None:  # that gate, with this recall
        manifest = active_manifest(settings)
        passed = manifest.gate() if manifest is not None else GateOptions()
        gate = dataclasses.replace(passed, min_recall=min_recall)
    result = update_index(settings, database, UpdateOptions(gate=gate))
    print_json(result.as_dict())
    if result.rebuild_needed:
        console.print(f"[yellow]rebuild needed:[/] {result.reason}")
        if result.version is None:
            raise typer.Exit(UPDATE_REBUILD_EXIT)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="index")
