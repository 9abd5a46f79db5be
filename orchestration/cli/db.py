"""``recsys db``: schema migrations."""

from __future__ import annotations

import typer

from orchestration.cli.common import HomeOption, console, settings_for, user_errors
from recsys.db.session import make_engine, upgrade_schema

app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)


@app.command("upgrade")
@user_errors
def upgrade(
    home: HomeOption = None,
    revision: str = typer.Option("head", help="Alembic revision to upgrade to."),
) -> None:
    """Apply migrations (also done automatically on first use)."""
    settings = settings_for(home)
    engine = make_engine(settings.resolved_database_url)
    upgrade_schema(engine, revision)
    console.print(f"database at {engine.url.render_as_string(hide_password=True)} is at {revision}")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="db")
