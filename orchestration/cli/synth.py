"""``recsys synth``: write a synthetic, topic-structured corpus of real MP4 files and its
watch-event log (``events.parquet``)."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from orchestration.cli.common import (
    HomeOption,
    console,
    count_option,
    old_spelling,
    seconds_option,
    signature_default,
    topics_option,
    user_errors,
)
from recsys.synth import generate_corpus, generate_events

log = logging.getLogger("recsys.synth")


def _default(name: str) -> object:
    return signature_default(generate_corpus, name)


@user_errors
def synth(
    ctx: typer.Context,
    out: Path = typer.Argument(
        ..., help="Output directory (videos/, manifest.csv, cowatch.csv, events.parquet)."
    ),
    count: int = count_option(_default("videos"), 1),
    topics: int = topics_option(_default("topics"), 1),
    seconds: float = seconds_option(_default("seconds"), 0.1),
    seed: int = typer.Option(
        _default("seed"), "--seed", help="Same seed, same metadata and topics."
    ),
    width: int = typer.Option(_default("width"), "--width", min=2),
    height: int = typer.Option(_default("height"), "--height", min=2),
    fps: float = typer.Option(_default("fps"), "--fps", min=1.0),
    silent_fraction: float = typer.Option(
        _default("silent_fraction"),
        "--silent-fraction",
        min=0.0,
        max=1.0,
        help="Share of videos without audio.",
    ),
    events: bool = typer.Option(
        True,
        "--events/--no-events",
        help="Also write events.parquet: a watch log of the videos (drifting topic tastes, "
        "Zipf popularity, sessions, releases over time, a few bots).",
    ),
    users: int = typer.Option(
        signature_default(generate_events, "users"),
        "--users",
        min=1,
        help="Users in the watch log.",
    ),
    days: float = typer.Option(
        signature_default(generate_events, "days"),
        "--days",
        min=0.01,
        help="Days the watch log spans (videos are released over it).",
    ),
    old_videos: int | None = typer.Option(
        None, "--videos", min=1, hidden=True, help="Deprecated spelling of --count."
    ),
    home: HomeOption = None,
) -> None:
    """Generate videos whose look and sound depend on a latent topic (see recsys.synth)."""
    del home  # accepted for uniformity; synth writes only under OUT
    videos = old_spelling(ctx, "count", old_videos, "--videos", "--count") or count
    from recsys.progress import Progress

    with Progress("synth", videos, unit="videos", console=console, logger=log, log_every=50) as bar:

        def on_video(done: int, total: int) -> None:
            del total  # the bar's total is the number of videos asked for
            bar.update(done)

        info = generate_corpus(
            out,
            videos,
            topics,
            seconds,
            seed,
            width=width,
            height=height,
            fps=fps,
            silent_fraction=silent_fraction,
            progress=on_video,
        )
    silent = sum(not v.has_audio for v in info.videos)
    console.print(
        f"wrote {len(info.videos)} videos ({silent} without audio) in {len(info.topics)} topics, "
        f"{len(info.pairs)} co-watch pairs -> {info.manifest}, {info.cowatch}"
    )
    if events and info.videos:
        log_info = generate_events(
            out,
            [v.video_id for v in info.videos],
            [v.topic for v in info.videos],
            video_series=[v.series for v in info.videos],  # sessions binge a series
            users=users,
            days=days,
            seed=seed,
        )
        console.print(
            f"wrote {log_info.events} watch events of {log_info.users} users "
            f"({len(log_info.bots)} bots) over {days:g} days -> {log_info.path}; "
            f"load them with: recsys ingest --events {log_info.path}"
        )


def register(app: typer.Typer) -> None:
    app.command("synth")(synth)
