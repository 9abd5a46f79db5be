"""``recsys serve``: the recommendation API under uvicorn."""

from __future__ import annotations

import typer

from orchestration.cli.common import (
    SERVER,
    Default,
    HomeOption,
    host_option,
    port_option,
    settings_for,
    user_errors,
)


@user_errors
def serve(
    home: HomeOption = None,
    host: str = host_option(),
    port: int = port_option(),
    workers: int = typer.Option(
        Default(SERVER, "workers"),
        "--workers",
        min=1,
        help="Worker processes (each loads the index).",
    ),
    log_level: str = typer.Option(
        Default(SERVER, "log_level"), "--log-level", help="uvicorn log level."
    ),
    access_log: bool = typer.Option(
        False, "--access-log/--no-access-log", help="Log every request (slower)."
    ),
) -> None:
    """Serve /similar, the web page and /docs; picks up newly published indexes by itself."""
    from api.uvicorn_runner import run

    run(
        settings_for(home),
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        access_log=access_log,
    )


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
