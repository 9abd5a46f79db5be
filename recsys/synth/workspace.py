"""What a benchmark sets up before it measures, written once for all of them: a home with its
database, a synthetic corpus with its content features (cached under a work folder, so reruns
skip decoding), and the real-av clips of the shared data folder beside the source checkout.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

from recsys.db import Database, open_database
from recsys.features import VideoFeatures, get_extractor
from recsys.media import decode_video
from recsys.settings import Settings, load_settings
from recsys.synth.corpus import SERIES_PER_TOPIC, CorpusInfo, generate_corpus

#: ``shared/data/real-av`` next to the repository: real clips with a ``manifest.csv``
#: (``file``, ``category``, ...) and their ``clips/`` and ``silent/`` folders.
REAL_AV_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "real-av"
#: Frames and frame size of the cached content features (the settings' defaults).
FRAMES = 16
FRAME_SIZE = 112


def open_home(home: Path | str, **overrides: object) -> tuple[Settings, Database]:
    """The settings of ``home`` (its folders made) and its database, migrated."""
    settings = load_settings(home, **overrides)
    settings.ensure_dirs()
    return settings, open_database(settings)


def real_av_rows(directory: Path = REAL_AV_DIR) -> list[dict[str, str]]:
    """The rows of the real-av ``manifest.csv``; none when the folder is absent."""
    manifest = directory / "manifest.csv"
    if not manifest.is_file():
        return []
    with manifest.open(newline="") as handle:
        return list(csv.DictReader(handle))


def cached_features(
    path: Path, workdir: Path, frames: int = FRAMES, size: int = FRAME_SIZE
) -> VideoFeatures:
    """The content features of the video at ``path``, cached under ``workdir/features``.

    The key holds the file's size and mtime, so a regenerated corpus file is never read from
    the cache."""
    extractor = get_extractor("content")
    stat = path.stat()
    key = hashlib.sha256(
        f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}:{frames}:{size}".encode()
    )
    target = workdir / "features" / extractor.version / f"{key.hexdigest()[:24]}.npz"
    if target.is_file():
        return VideoFeatures.from_npz(target)
    features = extractor.extract(decode_video(path, num_frames=frames, size=size))
    features.to_npz(target)
    return features


def synthetic_corpus(
    workdir: Path,
    *,
    videos: int,
    topics: int,
    seconds: float,
    series_per_topic: int = SERIES_PER_TOPIC,
) -> CorpusInfo:
    """The seeded synthetic corpus of these arguments, written under ``workdir`` in a folder
    named by them (:func:`recsys.synth.generate_corpus`, seed 0)."""
    return generate_corpus(
        workdir / f"synthetic-{videos}-{topics}-{seconds}-s{series_per_topic}",
        videos=videos,
        topics=topics,
        seconds=seconds,
        seed=0,
        series_per_topic=series_per_topic,
    )


def corpus_features(info: CorpusInfo, workdir: Path) -> list[VideoFeatures]:
    """The cached content features of every video of ``info``, in its order."""
    return [cached_features(info.out_dir / video.file, workdir) for video in info.videos]
