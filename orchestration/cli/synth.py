"""``recsys synth``: write a synthetic, topic-structured corpus of real MP4 files."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from orchestration.cli.common import HomeOption, console
from recsys.synth import generate_corpus

log = logging.getLogger("recsys.synth")


def synth(
    out: Path = typer.Argument(..., help="Output directory (videos/, manifest.csv, cowatch.csv)."),
    videos: int = typer.Option(40, "--videos", min=1, help="Number of videos."),
    topics: int = typer.Option(4, "--topics", min=1, help="Number of latent topics."),
    seconds: float = typer.Option(3.0, "--seconds", min=0.1, help="Duration of each video."),
    seed: int = typer.Option(0, "--seed", help="Same seed, same metadata and topics."),
    width: int = typer.Option(160, "--width", min=2),
    height: int = typer.Option(120, "--height", min=2),
    fps: float = typer.Option(12.0, "--fps", min=1.0),
    silent_fraction: float = typer.Option(
        0.1, "--silent-fraction", min=0.0, max=1.0, help="Share of videos without audio."
    ),
    home: HomeOption = None,
) -> None:
    """Generate videos whose look and sound depend on a latent topic (see recsys.synth)."""
    del home  # accepted for uniformity; synth writes only under OUT
    from rich.progress import Progress

    with Progress(console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task("synthesising", total=videos)

        def on_video(done: int, total: int) -> None:
            bar.update(task, completed=done)
            if not console.is_terminal and (done % 50 == 0 or done == total):
                log.info("synth: %d/%d videos", done, total)

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


def register(app: typer.Typer) -> None:
    app.command("synth")(synth)
