"""Entry point of the ``recsys`` console script; each command lives in its own module.

Every command runs inside :class:`OneLineErrors`, the one place where failures become what a
user reads: a :class:`~recsys.errors.RecsysError` (which includes a database that cannot be
opened, see :mod:`recsys.db.session`) and a failure the machine causes (a full disk, a database
lost mid-command) print ``error: <what failed and what to do>`` on one line and exit 1. Any
other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import importlib
import os
import re
from pathlib import Path
from typing import Any

import typer
import typer.core
from sqlalchemy.exc import InterfaceError, OperationalError

from orchestration.cli.common import configure_logging, fail, set_global_home
from recsys.errors import RecsysError

#: errno values that mean the disk (or the quota, or a file-size limit) has no room.
DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
FREE_SPACE = "free space on that disk and run the command again"
# faiss reports a failed write as a RuntimeError ending with the OS reason.
_NATIVE_WRITE = re.compile(r"write error in (?P<path>.+?): \d+ != \d+ \((?P<reason>[^)]*)\)")


def machine_problem(error: BaseException) -> str | None:
    """One line for a failure the machine caused (what failed, what to do), None otherwise."""
    if isinstance(error, OSError) and error.errno in DISK_FULL:
        where = f"cannot write {error.filename}" if error.filename else "a write failed"
        return f"the disk is full: {where} ({error.strerror}); {FREE_SPACE}"
    if isinstance(error, RuntimeError) and not isinstance(error, typer.Exit):
        found = _NATIVE_WRITE.search(str(error))
        full = {os.strerror(code) for code in DISK_FULL}
        if found and found.group("reason") in full:
            return (
                f"the disk is full: cannot write {found.group('path')} "
                f"({found.group('reason')}); {FREE_SPACE}"
            )
    if isinstance(error, OperationalError | InterfaceError):
        reason = str(error.orig or error).strip().splitlines()
        return (
            f"the database failed: {reason[0] if reason else type(error).__name__}; check "
            "that it is running and reachable (RECSYS_DATABASE_URL) and run the command again"
        )
    return None


class OneLineErrors(typer.core.TyperGroup):
    """The root command group: runs a command and turns its expected failures into one line."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except RecsysError as error:
            raise fail(str(error)) from error
        except Exception as error:
            message = machine_problem(error)
            if message is None:
                raise
            raise fail(message) from error


app = typer.Typer(
    cls=OneLineErrors,
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
    "orchestration.cli.tags",
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
