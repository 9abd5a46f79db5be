"""Stage A, content features: decode + extract per video, in killable worker processes.

The one implementation the refresh (both engines), training (features of a new catalog) and the
upload route share: :mod:`~recsys.stage_a.tasks` (what one worker does for one video),
:mod:`~recsys.stage_a.pool` (the kept process pool, crash isolation) and
:mod:`~recsys.stage_a.warmup` (what a fresh worker runs before its first video).
"""

from recsys.stage_a.pool import (
    WorkerStartError,
    default_workers,
    shutdown_pools,
    stream_features,
)
from recsys.stage_a.tasks import (
    FeatureResult,
    FeatureSpec,
    VideoTask,
    compute_features,
    decode_only,
    extract_features,
    init_worker,
)

__all__ = [
    "FeatureResult",
    "FeatureSpec",
    "VideoTask",
    "WorkerStartError",
    "compute_features",
    "decode_only",
    "default_workers",
    "extract_features",
    "init_worker",
    "shutdown_pools",
    "stream_features",
]
