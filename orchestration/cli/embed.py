"""``recsys embed``: bring embeddings of one model version up to date (resumable)."""

from __future__ import annotations

import typer

from orchestration.cli.common import (
    Default,
    JsonOption,
    ModelOption,
    StageWorkersOption,
    console,
    print_json,
    with_database,
)
from recsys.choices import Engine
from recsys.db import Database
from recsys.settings import Settings

OPTIONS = "recsys.refresh.options:RefreshOptions"


@with_database
def embed(
    settings: Settings,
    database: Database,
    model: ModelOption = None,
    engine: Engine = typer.Option(
        Default(OPTIONS, "engine"), "--engine", help="local (process pool) or ray (Ray Data)."
    ),
    workers: StageWorkersOption = None,
    batch_size: int = typer.Option(
        Default(OPTIONS, "batch_size"), "--batch-size", min=1, help="Videos per model batch."
    ),
    video_ids: list[str] | None = typer.Option(
        None, "--video-id", help="Only these videos (external ids); repeat the option."
    ),
    retry_failed: bool = typer.Option(
        False, "--retry-failed", help="Also retry videos whose earlier attempt failed."
    ),
    ray_address: str | None = typer.Option(
        None, "--ray-address", help="Ray cluster to join (engine ray). Default: local Ray."
    ),
    extractor: str | None = typer.Option(
        None,
        "--extractor",
        help="Stage A only: cache this spec's features (e.g. "
        "visual=open_clip:ViT-B-32,audio=vggish) for every video; no model needed.",
        show_default=False,
    ),
    as_json: JsonOption = False,
) -> None:
    """Embed the videos whose embedding is missing or outdated; safe to kill and re-run."""
    from recsys.refresh import RefreshOptions, run_refresh

    if extractor is not None:
        _features_only(settings, database, extractor, workers, video_ids, as_json)
        return

    if model is None:
        from recsys.models.registry import active_model_version, no_active_model

        if active_model_version(database) is None:
            raise no_active_model(database)  # names a model the gate refused, if any
    options = RefreshOptions(
        model_version=model,
        engine=engine,
        workers=workers,
        batch_size=batch_size,
        video_ids=video_ids or None,
        retry_failed=retry_failed,
        ray_address=ray_address,
    )
    summary = run_refresh(settings, database, options)
    if as_json:
        print_json(summary.as_dict())
        return
    stages = ", ".join(f"{k} {v:.2f}s" for k, v in summary.stage_seconds.items())
    console.print(
        f"model [bold]{summary.model_version}[/]: {summary.selected} selected, "
        f"{summary.embedded} embedded, {summary.cache_hits} from the feature cache, "
        f"{summary.failed} failed; {summary.seconds:.1f} s, "
        f"{summary.videos_per_s:.1f} videos/s (stages: {stages})",
        highlight=False,
    )
    for failure in summary.failures[:20]:
        console.print(f"  [red]failed[/] {failure.video_id}: {failure.reason}", highlight=False)
    if len(summary.failures) > 20:
        console.print(f"  … and {len(summary.failures) - 20} more (see `recsys status`)")
    if summary.failed:
        console.print("retry failed videos with `recsys embed --retry-failed`")


def _features_only(
    settings: Settings,
    database: Database,
    extractor: str,
    workers: int | None,
    video_ids: list[str] | None,
    as_json: bool,
) -> None:
    from recsys.refresh.features_only import fill_feature_cache

    summary = fill_feature_cache(
        settings, database, extractor, workers=workers, video_ids=video_ids or None
    )
    if as_json:
        print_json(summary.as_dict())
    else:
        reused = ", ".join(f"{k} {v}" for k, v in summary.reused_parts.items())
        console.print(
            f"features [bold]{summary.extractor}[/] ({summary.extractor_version}): "
            f"{summary.selected} selected, {summary.cache_hits} cached, {summary.computed} "
            f"computed (cached parts reused: {reused}), {summary.failed} failed; "
            f"{summary.seconds:.1f} s",
            highlight=False,
        )
        for failure in summary.failures[:20]:
            console.print(f"  [red]failed[/] {failure.video_id}: {failure.reason}", highlight=False)
    if summary.failed:
        raise typer.Exit(1)


def register(root: typer.Typer) -> None:
    root.command("embed")(embed)
