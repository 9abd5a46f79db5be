"""Entry point of the ``recsys`` console script; each command lives in its own module."""

from __future__ import annotations

import importlib
from pathlib import Path

import typer

from orchestration.cli.common import configure_logging, set_global_home

app = typer.Typer(
    name="recsys",
    help="Video recommendation embedding engine: ingest, train, embed, index and serve.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

# One module per command group; each exposes ``register(app)``.
COMMAND_MODULES = (
    "orchestration.cli.db",
    "orchestration.cli.synth",
    "orchestration.cli.ingest",
    "orchestration.cli.status",
    "orchestration.cli.train",
    "orchestration.cli.evaluate",
    "orchestration.cli.models",
    "orchestration.cli.embed",
    "orchestration.cli.index",
    "orchestration.cli.serve",
    "orchestration.cli.demo",
    "orchestration.cli.weights",
)


@app.callback()
def main(
    home: Path | None = typer.Option(
        None, "--home", help="State directory for every command (same as RECSYS_HOME)."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
) -> None:
    set_global_home(home)
    configure_logging(verbose)


for _module in COMMAND_MODULES:
    importlib.import_module(_module).register(app)


if __name__ == "__main__":
    app()
