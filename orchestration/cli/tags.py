"""``recsys tags``: train the tags classifier on the human labels, tag the catalog, evaluate."""

from __future__ import annotations

from typing import TYPE_CHECKING

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


def _options(
    source: Source | None,
    method: Method | None,
    threshold: float,
    extractor: str | None,
    workers: int | None,
) -> TagsOptions:
    from training.tags import TagsOptions

    return TagsOptions(
        extractor=extractor,
        source=source,
        method=method,
        threshold=threshold,
        workers=workers,
        progress=True,
    )


@app.command("train")
@with_database
def train_command(
    settings: Settings,
    database: Database,
    source: Source | None = SourceOption,
    method: Method | None = MethodOption,
    threshold: float = ThresholdOption,
    extractor: str | None = ExtractorOption,
    workers: StageWorkersOption = None,
    no_predict: bool = typer.Option(
        False, "--no-predict", help="Only train; leave the stored predictions as they are."
    ),
    as_json: JsonOption = False,
) -> None:
    """Train on the videos with a category or tags, make the model current, tag the catalog."""
    from training.tags import train_tags

    options = _options(source, method, threshold, extractor, workers)
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
def eval_command(
    settings: Settings,
    database: Database,
    source: Source | None = SourceOption,
    method: Method | None = MethodOption,
    threshold: float = ThresholdOption,
    extractor: str | None = ExtractorOption,
    seeds: int = typer.Option(10, "--seeds", min=1, help="Cross-validation repeats."),
    workers: StageWorkersOption = None,
    as_json: JsonOption = False,
) -> None:
    """Cross-validated accuracy, macro-F1 and calibration error beside majority and random."""
    from training.tags import evaluate_tags

    options = _options(source, method, threshold, extractor, workers)
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
