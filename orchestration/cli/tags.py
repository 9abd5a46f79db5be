"""``recsys tags``: train the tags classifier on the human labels, tag the catalog, evaluate."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

import typer

from orchestration.cli.common import (
    Default,
    JsonOption,
    StageWorkersOption,
    console,
    print_json,
    with_database,
)
from recsys.choices import TagMethod as Method
from recsys.choices import TagSource as Source
from recsys.db import Database
from recsys.settings import Settings

if TYPE_CHECKING:
    from training.tags import TagsOptions

OPTIONS = "training.tags.run:TagsOptions"
P = ParamSpec("P")
R = TypeVar("R")

app = typer.Typer(
    help="Tags for untagged videos: categories and tags predicted from the content, with the "
    "spans where each applies.",
    no_args_is_help=True,
)

SourceOption = typer.Option(
    None,
    "--source",
    help="Input: features (pooled stage-A) or embedding (the active model's). "
    "Default: cross-validation chooses.",
    show_default=False,
)
MethodOption = typer.Option(
    None,
    "--method",
    help="probe (logistic regression) or knn (neighbour votes). Default: cross-validation chooses.",
    show_default=False,
)
ThresholdOption = typer.Option(
    Default(OPTIONS, "threshold"),
    "--threshold",
    min=0.0,
    max=1.0,
    help="Calibrated confidence below which a prediction is not made (about the precision "
    "of what is kept).",
)
ExtractorOption = typer.Option(
    None, "--extractor", help="Stage-A spec (default: the home's).", show_default=False
)


def _training_parameters() -> list[inspect.Parameter]:
    """The CLI options that make a :class:`~training.tags.TagsOptions`, as parameters."""
    keyword = inspect.Parameter.POSITIONAL_OR_KEYWORD  # before the command's own, as Typer lists
    return [
        inspect.Parameter("source", keyword, default=SourceOption, annotation=Source | None),
        inspect.Parameter("method", keyword, default=MethodOption, annotation=Method | None),
        inspect.Parameter("threshold", keyword, default=ThresholdOption, annotation=float),
        inspect.Parameter("extractor", keyword, default=ExtractorOption, annotation=str | None),
        inspect.Parameter("workers", keyword, default=None, annotation=StageWorkersOption),
    ]


def with_training_options(
    command: Callable[Concatenate[Settings, Database, TagsOptions, P], R],
) -> Callable[..., R]:
    """A command that trains: ``def cmd(settings, database, options, <its own options>)``.

    The CLI command gets ``--source``, ``--method``, ``--threshold``, ``--extractor`` and
    ``--workers`` instead of ``options`` (one declaration for ``train`` and ``eval``); they are
    made into the :class:`~training.tags.TagsOptions` passed in.
    """
    # ``options`` is replaced, so its type (imported only when a command runs) is not needed.
    signature = inspect.signature(command, eval_str=True, locals={"TagsOptions": object})
    settings, database, options, *own = signature.parameters.values()
    if options.name != "options":
        raise TypeError(f"{command.__qualname__} must start with (settings, database, options)")
    shared = _training_parameters()

    @functools.wraps(command)
    def run(settings: Settings, database: Database, *args: Any, **kwargs: Any) -> R:
        from training.tags import TagsOptions

        chosen = {p.name: kwargs.pop(p.name) for p in shared}
        return command(settings, database, TagsOptions(**chosen, progress=True), *args, **kwargs)

    parameters = [settings, database, *shared, *own]
    run.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=parameters, return_annotation=inspect.Signature.empty
    )
    run.__annotations__ = {p.name: p.annotation for p in parameters}
    return run


@app.command("train")
@with_database
@with_training_options
def train_command(
    settings: Settings,
    database: Database,
    options: TagsOptions,
    no_predict: bool = typer.Option(
        False, "--no-predict", help="Only train; leave the stored predictions as they are."
    ),
    as_json: JsonOption = False,
) -> None:
    """Train on the videos with a category or tags, make the model current, tag the catalog."""
    from training.tags import train_tags

    result = train_tags(settings, database, options, predict=not no_predict)
    if as_json:
        print_json(result.as_dict())
        return
    for warning in result.warnings:
        console.print(f"warning: {warning}")
    console.print(f"tags model {result.version} ({result.source})")
    for kind, head in result.heads.items():
        console.print(
            f"  {kind}: {len(head['classes'])} classes, {head['chosen']} chosen by "
            f"cross-validation on {head['videos']} videos (score {head['score']})"
        )
    if result.predicted is not None:
        p = result.predicted
        console.print(
            f"tagged {p.predicted} videos ({p.abstained} abstained, {p.disagree} with "
            f"disagreeing segments, {len(p.missing)} without inputs)"
        )


@app.command("predict")
@with_database
def predict_command(
    settings: Settings,
    database: Database,
    video_ids: list[str] | None = typer.Option(
        None, "--video-id", help="Only these videos (external ids); repeat the option."
    ),
    workers: StageWorkersOption = None,
    as_json: JsonOption = False,
) -> None:
    """Tag the catalog (or some videos) with the current tags model; human labels stay."""
    from training.tags import TagsOptions, tag_catalog

    summary = tag_catalog(
        settings, database, TagsOptions(workers=workers, progress=True), video_ids=video_ids
    )
    if as_json:
        print_json(summary.as_dict())
        return
    console.print(
        f"tags model {summary.tags_model}: tagged {summary.predicted} of {summary.selected} "
        f"videos ({summary.abstained} abstained, {summary.disagree} with disagreeing segments, "
        f"{len(summary.missing)} without inputs)"
    )


@app.command("eval")
@with_database
@with_training_options
def eval_command(
    settings: Settings,
    database: Database,
    options: TagsOptions,
    seeds: int = typer.Option(10, "--seeds", min=1, help="Cross-validation repeats."),
    as_json: JsonOption = False,
) -> None:
    """Cross-validated accuracy, macro-F1 and calibration error beside majority and random."""
    from training.tags import evaluate_tags

    report = evaluate_tags(settings, database, options, seeds=range(seeds))
    if as_json:
        print_json(report)
        return
    for kind in ("categories", "tags"):
        if kind in report:
            figures = {
                key: value["mean"] for key, value in report[kind].items() if isinstance(value, dict)
            }
            console.print(f"{kind}: " + ", ".join(f"{k} {v:.3f}" for k, v in figures.items()))
    for warning in report["warnings"]:
        console.print(f"warning: {warning}")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="tags")
