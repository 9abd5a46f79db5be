"""Options and helpers shared by every CLI command.

* Choices are the ``StrEnum`` types of :mod:`recsys.choices`: Typer lists their values in
  ``--help`` and rejects anything else with the list (exit 2).
* Defaults are read from the library's config dataclasses (:class:`Default`) or from the library
  function's own signature (:func:`signature_default`), never restated here.
* An option that several commands take (``--json``, ``--host``, ``--fusion``, ``--count``, ...)
  is declared here once, help text included; each command passes its own default and bounds.
* :func:`with_database` runs a command with the settings and an open database and disposes it;
  :func:`user_errors` (which it includes) turns a :class:`~recsys.errors.RecsysError` into
  ``error: <message>`` and exit 1. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import json
import logging
import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Concatenate, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from recsys.db import Database, open_database
from recsys.errors import RecsysError, UserError
from recsys.settings import Settings, load_settings

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

HomeOption = Annotated[
    Path | None,
    typer.Option(
        "--home",
        help="State directory (database, features, embeddings, models, indexes). "
        "Default: `recsys --home`, else $RECSYS_HOME, else ./.recsys",
        show_default=False,
    ),
]
ModelOption = Annotated[
    str | None,
    typer.Option("--model", help="Model version. Default: the active model.", show_default=False),
]
StageWorkersOption = Annotated[
    int | None,
    typer.Option(
        "--workers",
        min=1,
        help="Stage-A decode processes (videos not in the feature cache). "
        "Default: one per CPU core.",
        show_default=False,
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print the result as JSON on stdout instead of text.")
]
#: The function that serves the API (``recsys serve``, ``recsys demo``); its defaults are ours.
SERVER = "api.uvicorn_runner:run"


def host_option() -> Any:
    """``--host`` of the API (``recsys serve``, ``recsys demo``)."""
    return typer.Option(Default(SERVER, "host"), "--host", help="Address the API listens on.")


def port_option() -> Any:
    """``--port`` of the API (``recsys serve``, ``recsys demo``)."""
    return typer.Option(
        Default(SERVER, "port"), "--port", min=0, max=65535, help="Port the API listens on."
    )


def fusion_option(default: Any) -> Any:
    """``--fusion`` of a model (``recsys train``, ``recsys demo``)."""
    return typer.Option(
        default, "--fusion", help="early: concatenate, one tower; late: a tower each."
    )


def epochs_option(default: Any) -> Any:
    """``--epochs`` of a training run (``recsys train``, ``recsys demo``)."""
    return typer.Option(
        default, "--epochs", min=1, help="Maximum epochs (early stopping may end sooner)."
    )


def count_option(default: Any, minimum: int) -> Any:
    """``--count`` of a synthetic corpus (``recsys synth``, ``recsys demo``)."""
    return typer.Option(default, "--count", min=minimum, help="Synthetic videos to generate.")


def topics_option(default: Any, minimum: int) -> Any:
    """``--topics`` of a synthetic corpus."""
    return typer.Option(default, "--topics", min=minimum, help="Synthetic topics (= categories).")


def seconds_option(default: Any, minimum: float) -> Any:
    """``--seconds`` of a synthetic corpus."""
    return typer.Option(default, "--seconds", min=minimum, help="Length of each video.")


console = Console(stderr=True)
_global_home: Path | None = None


class Default:
    """The default of a config dataclass field (or a function's parameter), read when needed.

    ``Default("training.config:TrainConfig", "epochs")`` is what ``TrainConfig().epochs`` is;
    ``Default("api.uvicorn_runner:run", "port")`` the default of ``run(port=...)``. Click calls
    it for the value and Typer's ``--help`` prints ``str()`` of it; reading it late keeps
    ``recsys --help`` and unrelated commands from importing torch, faiss or the API.
    """

    def __init__(self, owner: str, name: str) -> None:
        self.owner = owner
        self.name = name

    def __call__(self) -> Any:
        module, _, qualname = self.owner.partition(":")
        target = getattr(importlib.import_module(module), qualname)
        if not (dataclasses.is_dataclass(target) and isinstance(target, type)):
            return signature_default(target, self.name)
        for field in dataclasses.fields(target):
            if field.name == self.name:
                if field.default is not dataclasses.MISSING:
                    return field.default
                if field.default_factory is not dataclasses.MISSING:
                    return field.default_factory()
                raise TypeError(f"{self.owner}.{self.name} has no default")
        raise AttributeError(f"{self.owner} has no field {self.name!r}")

    def __str__(self) -> str:  # what `--help` shows as the default
        value = self()
        if value is None:
            return ""
        return str(value.value if isinstance(value, Enum) else value)

    def __repr__(self) -> str:
        return f"Default({self.owner!r}, {self.name!r})"


def signature_default(function: Callable[..., Any], name: str) -> Any:
    """The default of ``function``'s parameter ``name`` (for commands over a plain function)."""
    default = inspect.signature(function).parameters[name].default
    if default is inspect.Parameter.empty:
        raise TypeError(f"{function.__qualname__}() has no default for {name!r}")
    return default


def choices_metavar(kind: type[Enum]) -> str:
    """``<a|b|c>``: the allowed values as Typer shows those of an enum option."""
    return "<" + "|".join(str(member.value) for member in kind) + ">"


def set_global_home(home: Path | None) -> None:
    """Remember ``recsys --home X`` given before the command name."""
    global _global_home
    _global_home = home


def settings_for(home: Path | None) -> Settings:
    """Settings with a command's ``--home`` (or the global one) applied, directories created."""
    settings = load_settings(home if home is not None else _global_home)
    settings.ensure_dirs()
    return settings


def existing_settings(home: Path | None) -> Settings:
    """Settings for a command that only reads: nothing is created (no empty ``.recsys`` where it
    runs); a SQLite home without a database holds nothing to read, which is a UserError."""
    settings = load_settings(home if home is not None else _global_home)
    if settings.database_url is None and not (settings.resolved_home / "recsys.db").is_file():
        raise UserError(
            f"nothing was ingested in {settings.resolved_home} (no recsys home there): run "
            "`recsys ingest PATH` first, or name the home with --home or RECSYS_HOME"
        )
    return settings


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
    """Print ``error: <message>`` on one line of stderr and return the exit to raise."""
    console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True, highlight=False)
    return typer.Exit(code)


def deprecated(old: str, new: str) -> None:
    """Tell the user that ``old`` still works for this release but ``new`` is the spelling."""
    console.print(
        f"[yellow]deprecated:[/] {escape(old)} is now {escape(new)}; "
        "the old spelling will be removed in the next release",
        soft_wrap=True,
        highlight=False,
    )


def old_spelling(ctx: typer.Context, name: str, value: T | None, old: str, new: str) -> T | None:
    """``value`` of the deprecated option ``old`` (with the message), None when it was not given.

    ``name`` is the parameter of the new spelling ``new``; giving both is a usage error.
    """
    if value is None:
        return None
    source = ctx.get_parameter_source(name)
    if source is not None and source.name == "COMMANDLINE":
        raise typer.BadParameter(f"give {new} only ({old} is its old spelling)", param_hint=old)
    deprecated(f"{old} {value}", f"{new} {value}")
    return value


def user_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Run ``command``; a :class:`RecsysError` becomes ``error: <message>`` and exit 1.

    Only deliberate errors are caught: anything else (a shape error, CUDA out of memory) is a
    bug and propagates with its traceback.
    """

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except RecsysError as error:
            raise fail(str(error)) from error

    return run


def with_database(command: Callable[Concatenate[Settings, Database, P], R]) -> Callable[..., R]:
    """A command over the catalog: ``def cmd(settings, database, <its options>)``.

    The CLI command gets a ``--home`` option instead of the first two parameters; the settings
    are resolved from it, the database is opened, passed in and always disposed, and
    :func:`user_errors` applies.
    """
    return _over_database(command, settings_for)


def with_existing_database(
    command: Callable[Concatenate[Settings, Database, P], R],
) -> Callable[..., R]:
    """:func:`with_database` for a command that only reads (``status``, ``models list``): it
    creates nothing, and a home where nothing was ingested is an error (see
    :func:`existing_settings`)."""
    return _over_database(command, existing_settings)


def _over_database(
    command: Callable[Concatenate[Settings, Database, P], R],
    settings_of: Callable[[Path | None], Settings],
) -> Callable[..., R]:
    signature = inspect.signature(command, eval_str=True)
    first, second, *options = signature.parameters.values()
    if (first.name, second.name) != ("settings", "database"):
        raise TypeError(f"{command.__qualname__} must start with (settings, database)")
    if "home" in signature.parameters:
        raise TypeError(f"{command.__qualname__} gets --home from with_database")
    home = inspect.Parameter(
        "home", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=HomeOption
    )

    @functools.wraps(command)
    def run(*args: Any, home: Path | None = None, **kwargs: Any) -> R:
        settings = settings_of(home)
        database = open_database(settings)
        try:
            return command(settings, database, *args, **kwargs)
        except RecsysError as error:
            raise fail(str(error)) from error
        finally:
            database.dispose()

    parameters = [*options, home]
    # Typer reads the signature and the annotations of the command it is given.
    run.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    run.__annotations__ = {p.name: p.annotation for p in parameters}
    run.__annotations__["return"] = signature.return_annotation
    return run
