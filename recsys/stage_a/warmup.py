"""Warm start for stage-A workers.

Importing this module (the forkserver preloads it) runs the default ``content`` extractor once
on a synthetic one-second clip. That pulls in the libraries librosa and scipy load lazily and
fills numba's caches, which otherwise costs every fresh worker several seconds on its first
video; workers forked from the warmed server inherit all of it. Failures are ignored: warming is
an optimisation only.
"""

from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)
_warmed: set[str] = set()


def warm(extractor_name: str = "content") -> None:
    """Run ``extractor_name`` once on synthetic input in this process (idempotent)."""
    if extractor_name in _warmed:
        return
    _warmed.add(extractor_name)
    try:
        from recsys.features import get_extractor
        from recsys.media import DecodedVideo, ProbeResult

        rng = np.random.default_rng(0)
        sample_rate = 16_000
        decoded = DecodedVideo(
            frames=rng.integers(0, 255, size=(4, 32, 32, 3), dtype=np.uint8),
            timestamps=np.linspace(0.0, 0.75, 4),
            audio=(0.1 * rng.standard_normal(sample_rate)).astype(np.float32),
            sample_rate=sample_rate,
            probe=ProbeResult(
                path="<warmup>",
                size_bytes=0,
                duration_s=1.0,
                fps=4.0,
                width=32,
                height=32,
                rotation=0,
                video_codec=None,
                audio_codec=None,
                has_video=True,
                has_audio=True,
            ),
        )
        get_extractor(extractor_name).extract(decoded)
    except Exception as error:  # noqa: BLE001 - a cold worker is slower, not wrong
        logger.debug("stage-A warm-up of %s skipped: %s", extractor_name, error)


def warm_decode_worker(extractor_name: str = "content") -> None:
    """Start this process's killable decode worker and warm the extractor inside it.

    Stage A decodes and extracts in that worker (see :mod:`recsys.stage_a.tasks`); it is a fresh
    interpreter, not a fork of the warmed server, so without this its first video would pay the
    library imports.
    """
    try:
        import os

        from recsys.media.limits import DecodeLimits, run_isolated

        # Workers are kept per set of limits: warm the one the environment's settings name.
        limits = DecodeLimits.from_env(os.environ)
        run_isolated(warm, (extractor_name,), path="<warm-up>", timeout_s=120.0, limits=limits)
    except Exception as error:  # noqa: BLE001 - a cold worker is slower, not wrong
        logger.debug("decode-worker warm-up skipped: %s", error)


warm()
