"""A directory of awkward and broken media files, for bad-input tests of every consumer.

``write_bad_inputs(directory)`` returns ``{name: path}``. ``BROKEN`` names the files no
decoder can use (and the words their failure reason contains); the others are valid but
unusual and must be handled, not rejected.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recsys.synth.writer import write_test_video

#: name -> a word the failure reason contains
BROKEN = {
    "zero_byte": "empty",
    "random_bytes": "not a recognised",
    "truncated": "truncated",
    "truncated_faststart": "truncated",
    "audio_only": "no video stream",
}
#: valid but unusual files: must be registered and decodable
AWKWARD = ("video_only", "one_frame", "tiny_2x2", "large", "variable_frame_rate", "rotated")


def _truncate(path: Path, fraction: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: max(1, int(len(data) * fraction))])


def write_bad_inputs(directory: str | Path, *, seed: int = 0) -> dict[str, Path]:
    """Write every bad-input case (``BROKEN`` and ``AWKWARD``) as ``<name>.mp4``."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}

    def name(key: str) -> Path:
        files[key] = out / f"{key}.mp4"
        return files[key]

    name("zero_byte").write_bytes(b"")
    name("random_bytes").write_bytes(np.random.default_rng(seed).bytes(4096))
    write_test_video(name("truncated"), seconds=1.0, seed=seed)
    _truncate(files["truncated"], 0.6)
    write_test_video(name("truncated_faststart"), seconds=1.0, seed=seed, faststart=True)
    _truncate(files["truncated_faststart"], 0.6)
    write_test_video(name("audio_only"), seconds=1.0, video=False, seed=seed)
    write_test_video(name("video_only"), seconds=1.0, audio=False, seed=seed)
    write_test_video(name("one_frame"), frames=1, seed=seed)
    write_test_video(name("tiny_2x2"), width=2, height=2, seconds=0.5, seed=seed)
    write_test_video(name("large"), width=3840, height=2160, frames=2, audio=False, seed=seed)
    write_test_video(name("variable_frame_rate"), seconds=2.0, variable_frame_rate=True, seed=seed)
    write_test_video(name("rotated"), seconds=0.5, rotation=90, seed=seed)
    return files
