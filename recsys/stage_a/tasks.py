"""Stage A per video: decode one file and extract its features, in the worker that runs it.

:func:`compute_features` is what every engine runs in its worker processes (the refresh's local
pool and Ray tasks, training's extraction of a new catalog): decode one video and extract its
features, turning any failure into a :class:`FeatureResult` with a reason instead of raising, so
one bad video never stops a batch. :func:`extract_features` is the raising variant the upload
route uses. This module imports the heavy libraries lazily so that a freshly spawned worker can
pin its thread counts before numpy or torch start their pools.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote, urlparse

from recsys.ids import VideoKey

if TYPE_CHECKING:
    from recsys.features import FeatureExtractor, VideoFeatures
    from recsys.features.composite import CompositeExtractor, EncoderInputs
    from recsys.media import DecodedVideo
    from recsys.media.limits import DecodeLimits
    from recsys.settings import Settings

T = TypeVar("T")


@dataclass(frozen=True)
class VideoTask:
    """One catalog video to compute features for (and, in the refresh, to embed)."""

    video_key: VideoKey  # internal key: videos.id, the FAISS id
    video_id: str  # external id
    uri: str
    content_hash: str


@dataclass(frozen=True)
class FeatureSpec:
    """Everything a worker needs to compute stage-A features the way the model expects them."""

    extractor: str
    extractor_version: str
    num_frames: int
    frame_size: int
    sample_rate: int
    timeout_s: float | None
    home: str | None = None  # where extractors find local weights (weights/ under the home)
    limits: DecodeLimits | None = None  # memory, frame size, threads (None: the defaults)
    device: str = "auto"  # where batched deep encoders run (the driver process only)

    @classmethod
    def for_model(cls, settings: Settings, extractor: str, extractor_version: str) -> FeatureSpec:
        from recsys.media.limits import DecodeLimits

        return cls(
            extractor=extractor,
            extractor_version=extractor_version,
            num_frames=settings.frames_per_video,
            frame_size=settings.frame_size,
            sample_rate=settings.audio_sample_rate,
            timeout_s=settings.decode_timeout_s,
            home=str(settings.resolved_home),
            limits=DecodeLimits.from_settings(settings),
            device=settings.device,
        )

    @property
    def composite(self) -> bool:
        """A visual + audio spec (decoded here, encoded by the networks in batches)."""
        return self.extractor not in ("content", "cnn")


@dataclass
class FeatureResult:
    """Features of one video, or why there are none (``error``)."""

    task: VideoTask
    features: VideoFeatures | None = None
    error: str | None = None
    cache_hit: bool = False
    seconds: float = 0.0  # decode + extract time, measured where it ran
    timings: dict[str, float] = field(default_factory=dict)
    inputs: EncoderInputs | None = None  # decoded, still to be encoded (visual + audio specs)
    reused: tuple[str, ...] = ()  # modalities whose cached part was used (not recomputed)


def uri_to_path(uri: str) -> str:
    """Catalog URIs are plain paths or ``file://`` URLs."""
    if uri.startswith("file://"):
        return unquote(urlparse(uri).path)
    return uri


_extractors: dict[tuple[str, str | None], Any] = {}


def extractor_for(spec: FeatureSpec) -> FeatureExtractor:
    """The process-wide extractor instance (models and tables load once per worker)."""
    key = (spec.extractor, spec.home)
    extractor = _extractors.get(key)
    if extractor is None:
        from recsys.features import get_extractor
        from recsys.settings import load_settings

        settings = load_settings(spec.home) if spec.home else None
        extractor = get_extractor(spec.extractor, settings=settings)
        _extractors[key] = extractor
    if str(extractor.version) != spec.extractor_version:
        from recsys.features import ExtractorMismatch

        raise ExtractorMismatch(
            f"extractor {spec.extractor} is version {extractor.version} here but the model "
            f"expects {spec.extractor_version}; install the matching version or train a new model"
        )
    return extractor


_initialised = False


def init_worker() -> None:
    """Worker-process initializer: one thread per library, so N workers use N cores.

    Idempotent (Ray calls it for every batch it runs in a worker).
    """
    global _initialised
    if _initialised:
        return
    _initialised = True
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[variable] = "1"
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - torch is a core dependency
        pass
    try:  # BLAS pools were sized when numpy loaded in the forkserver: shrink them too
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:  # pragma: no cover - comes with librosa (scikit-learn)
        pass
    from recsys.stage_a.warmup import warm, warm_decode_worker

    warm()
    warm_decode_worker()


def compute_features(task: VideoTask, spec: FeatureSpec) -> FeatureResult:
    """Stage A for one video (:func:`extract_features`), turning any failure into a reason."""
    start = time.perf_counter()
    from recsys.features import FeatureError

    try:
        features, timings = extract_features(uri_to_path(task.uri), spec)
    except FeatureError as error:  # already a sentence naming the extractor's failure
        return FeatureResult(task, error=str(error), seconds=time.perf_counter() - start)
    except Exception as error:  # noqa: BLE001 - a bad video fails alone, with its reason
        return FeatureResult(task, error=_reason(error), seconds=time.perf_counter() - start)
    return FeatureResult(
        task, features=features, seconds=time.perf_counter() - start, timings=timings
    )


def extract_features(path: str, spec: FeatureSpec) -> tuple[VideoFeatures, dict[str, float]]:
    """Decode one file and extract its features within the spec's time limit.

    With a time limit both steps run in the killable decode worker (``recsys.media.limits``):
    the limit then covers the extractor too, and only the features (kilobytes) cross the
    process boundary instead of the decoded frames and audio (about a megabyte per video).
    Raises ``MediaError`` for a bad file and ``FeatureError`` when the extractor fails.
    """
    if spec.composite and not _composite(spec).deep:
        # Hand-made encoders only: decode and encode in the decode worker, like ``content``,
        # so only the features (not the frames) cross the process boundary.
        outcome = _in_decode_worker(decode_and_encode, path, spec)
    elif spec.composite:
        start = time.perf_counter()
        extractor = _composite(spec)
        inputs = prepare_inputs_for(path, spec, extractor)
        decoded_at = time.perf_counter()
        result = extractor.encode_batch([inputs])[0]
        from recsys.features import FeatureError

        if isinstance(result, FeatureError):
            raise result
        return result, {"decode": decoded_at - start, "extract": time.perf_counter() - decoded_at}
    else:
        outcome = _in_decode_worker(decode_and_extract, path, spec)
    if isinstance(outcome, str):
        from recsys.features import FeatureError

        raise FeatureError(outcome)
    return outcome


def _composite(spec: FeatureSpec) -> CompositeExtractor:
    from recsys.features.composite import CompositeExtractor

    extractor = extractor_for(spec)
    assert isinstance(extractor, CompositeExtractor)
    return extractor


@functools.lru_cache(maxsize=8)
def _features_dir(home: str) -> Path:
    from recsys.settings import load_settings

    return load_settings(home).features_dir


def prepare_inputs_for(
    path: str, spec: FeatureSpec, extractor: CompositeExtractor, content_hash: str | None = None
) -> EncoderInputs:
    """One decode for both encoders (in the killable decode worker), skipping a modality
    whose part is already in the feature cache folder."""
    from recsys.features import FeatureError
    from recsys.features.cache import cached_parts
    from recsys.features.composite import EncoderInputs
    from recsys.stage_a.inputs import DecodePlan, decode_inputs_or_reason

    cached = {}
    if content_hash and spec.home:
        cached = cached_parts(_features_dir(spec.home), extractor, content_hash)
    if len(cached) == 2:
        return EncoderInputs(label=path, cached=cached)
    plan = DecodePlan.of(extractor, skip=tuple(cached))
    args = (path, plan, spec.timeout_s, spec.limits)
    if spec.timeout_s is None:
        outcome = decode_inputs_or_reason(*args)
    else:
        from recsys.media.limits import run_isolated

        outcome = run_isolated(
            decode_inputs_or_reason, args, path=path, timeout_s=spec.timeout_s, limits=spec.limits
        )
    if isinstance(outcome, str):
        raise FeatureError(outcome)
    outcome.cached = cached
    return outcome


def prepare_inputs(task: VideoTask, spec: FeatureSpec) -> FeatureResult:
    """Worker function of visual + audio specs: decode only; the caller encodes in batches."""
    start = time.perf_counter()
    from recsys.features import FeatureError

    try:
        inputs = prepare_inputs_for(
            uri_to_path(task.uri), spec, _composite(spec), content_hash=task.content_hash
        )
    except FeatureError as error:
        return FeatureResult(task, error=str(error), seconds=time.perf_counter() - start)
    except Exception as error:  # noqa: BLE001 - a bad video fails alone, with its reason
        return FeatureResult(task, error=_reason(error), seconds=time.perf_counter() - start)
    inputs.label = f"video {task.video_id}"
    seconds = time.perf_counter() - start
    return FeatureResult(task, inputs=inputs, seconds=seconds, timings={"decode": seconds})


def decode_only(task: VideoTask, spec: FeatureSpec) -> FeatureResult:
    """The decode floor: :func:`compute_features` without the extractor.

    The same decode in the same kind of process, returning nothing but a frame count, so
    benchmarks measure pure decoding against the refresh.
    """
    start = time.perf_counter()
    try:
        if spec.composite:  # the same decode a visual + audio spec does, no networks
            prepare_inputs_for(uri_to_path(task.uri), spec, _composite(spec))
        else:
            _in_decode_worker(decode_and_count, uri_to_path(task.uri), spec)
    except Exception as error:  # noqa: BLE001 - same contract as compute_features
        return FeatureResult(task, error=_reason(error))
    return FeatureResult(task, seconds=time.perf_counter() - start)


def _in_decode_worker(fn: Callable[[str, FeatureSpec], T], path: str, spec: FeatureSpec) -> T:
    """``fn(path, spec)`` in the killable decode worker (under the spec's limits) when there is
    a time limit, else here."""
    if spec.timeout_s is None:
        return fn(path, spec)
    from recsys.media.limits import run_isolated

    return run_isolated(fn, (path, spec), path=path, timeout_s=spec.timeout_s, limits=spec.limits)


def _decode(path: str, spec: FeatureSpec) -> DecodedVideo:
    """Decode in this process; the caller (the decode worker) enforces the hard limit."""
    from recsys.media import decode_video

    return decode_video(
        path,
        num_frames=spec.num_frames,
        size=spec.frame_size,
        sample_rate=spec.sample_rate,
        timeout_s=spec.timeout_s,
        isolate=False,
        limits=spec.limits,
    )


def decode_and_extract(
    path: str, spec: FeatureSpec
) -> tuple[VideoFeatures, dict[str, float]] | str:
    """Decode one file and extract its features in this process (the decode worker's job).

    Media errors propagate (the caller re-raises them with the file named); any other failure
    comes back as its reason, so an extractor bug is reported as such, not as a bad file.
    """
    start = time.perf_counter()
    decoded = _decode(path, spec)
    decoded_at = time.perf_counter()
    try:
        features = extractor_for(spec).extract(decoded)
    except Exception as error:  # noqa: BLE001 - reported with its reason
        return f"feature extraction failed: {_reason(error)}"
    return features, {"decode": decoded_at - start, "extract": time.perf_counter() - decoded_at}


def decode_and_encode(path: str, spec: FeatureSpec) -> tuple[VideoFeatures, dict[str, float]] | str:
    """A visual + audio spec without networks, decoded and encoded in this process (the
    decode worker's job); media errors propagate, any other failure comes back as its reason."""
    from recsys.features import FeatureError
    from recsys.stage_a.inputs import DecodePlan, decode_inputs

    start = time.perf_counter()
    extractor = _composite(spec)
    try:
        inputs = decode_inputs(path, DecodePlan.of(extractor), spec.timeout_s, spec.limits)
    except FeatureError as error:
        return str(error)
    decoded_at = time.perf_counter()
    result = extractor.encode_batch([inputs])[0]
    if isinstance(result, FeatureError):
        return f"feature extraction failed: {result}"
    return result, {"decode": decoded_at - start, "extract": time.perf_counter() - decoded_at}


def decode_and_count(path: str, spec: FeatureSpec) -> int:
    """Decode one file in this process and keep nothing (the decode floor's job)."""
    return int(_decode(path, spec).frames.shape[0])


def _reason(error: BaseException) -> str:
    reason = str(error) or type(error).__name__
    if type(error).__name__ not in reason:
        reason = f"{type(error).__name__}: {reason}"
    return reason
