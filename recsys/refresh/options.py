"""What a refresh run is asked to do, and what it reports back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from recsys.choices import Engine
from recsys.stage_a.pool import default_workers

# features: decode + extract in the workers (summed); cache_read/cache_write: feature cache in
# the driver; model: stage B; write: shard file + DB commit.
STAGES = ("features", "cache_read", "cache_write", "model", "write")


@dataclass
class RefreshOptions:
    """Knobs of :func:`recsys.refresh.run_refresh` (the CLI maps its flags one to one)."""

    model_version: str | None = None  # None: the active model
    engine: Engine = Engine.LOCAL
    workers: int | None = None  # None: os.cpu_count()
    batch_size: int = 64
    video_ids: Sequence[str] | None = None  # external ids; None: every video that needs it
    retry_failed: bool = False
    progress: bool | None = None  # None: a progress bar on a terminal, log lines otherwise
    # Stage-A function run in the workers: ``(VideoTask, FeatureSpec) -> FeatureResult``. It must
    # be a module-level function (workers are spawned); None means decode + extract.
    feature_fn: Any = None
    ray_address: str | None = None  # None: join a running Ray or start a local one

    def resolved_workers(self) -> int:
        return self.workers if self.workers and self.workers > 0 else default_workers()


@dataclass
class Failure:
    video_id: str
    reason: str


@dataclass
class RefreshSummary:
    """Closing report of one run; ``stage_seconds`` sums the time spent in each stage."""

    model_version: str
    engine: str
    workers: int
    batch_size: int
    selected: int = 0
    embedded: int = 0
    cache_hits: int = 0
    decoded: int = 0
    failed: int = 0
    batches: int = 0
    garbage_collected: int = 0
    compaction: dict[str, Any] = field(default_factory=dict)  # CompactionResult.as_dict()
    # CacheCompaction.as_dict() per feature-cache key, when the run cached new features
    feature_compaction: list[dict[str, Any]] = field(default_factory=list)
    tags: dict[str, Any] = field(default_factory=dict)  # recsys.tags.PredictSummary.as_dict()
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    failures: list[Failure] = field(default_factory=list)

    @property
    def videos_per_s(self) -> float:
        done = self.embedded + self.failed
        return done / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        payload = asdict(self)
        payload["videos_per_s"] = round(self.videos_per_s, 3)
        payload["seconds"] = round(self.seconds, 3)
        payload["stage_seconds"] = {k: round(v, 3) for k, v in self.stage_seconds.items()}
        return payload
