"""``recsys serve``: the recommendation API under uvicorn."""

from __future__ import annotations

import typer

from orchestration.cli.common import HomeOption, settings_for


def serve(
    home: HomeOption = None,
    host: str = typer.Option("127.0.0.1", help="Address to bind."),
    port: int = typer.Option(8000, min=0, max=65535, help="Port to bind."),
    workers: int = typer.Option(1, min=1, help="Worker processes (each loads the index)."),
    log_level: str = typer.Option("info", help="uvicorn log level."),
    access_log: bool = typer.Option(False, help="Log every request (slower)."),
) -> None:
    """Serve /similar, the web page and /docs; picks up newly published indexes by itself."""
    from api.server import run

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
