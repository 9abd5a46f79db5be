"""Request bounds (body sizes, the upload queue) and uploaded videos: type checks, the
on-the-fly embedding (probe → decode with a time limit → features → the served model's
embedder) and, when asked, the upload's predicted tags (the active tags model over the same
features)."""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import (
    MediaRejected,
    Overloaded,
    RequestTooLarge,
    ServiceUnavailable,
    UnsupportedMediaType,
    UploadTimeout,
    UploadTooLarge,
    public_text,
    scope_error_response,
)
from api.index_holder import IndexHolder
from recsys.ingest import VIDEO_EXTENSIONS
from recsys.settings import Settings
from serving.state import ServingState

if TYPE_CHECKING:
    from recsys.features import VideoFeatures
    from recsys.stage_a import FeatureSpec
    from recsys.tags import TagModel

log = logging.getLogger(__name__)

UPLOAD_PATH = "/similar/upload"
# Multipart framing (boundaries, part headers) on top of the file itself.
MULTIPART_SLACK = 64 * 1024
GENERIC_TYPES = frozenset(
    {"application/octet-stream", "application/mp4", "application/ogg", "application/x-matroska", ""}
)


class UploadQueue:
    """How many uploads one worker takes at once: ``concurrency`` decode, ``queue`` more wait.

    Waiting happens in the event loop (an :class:`asyncio.Semaphore`), never in a thread of
    the shared pool, so uploads queued behind a slow decode cannot starve ``/readyz``, the page
    or filtered searches. ``admitted`` counts every upload from its first byte to its answer
    (a body still streaming in holds a place too); one beyond ``concurrency + queue`` is
    refused at once.
    """

    def __init__(self, concurrency: int, queue: int) -> None:
        self.concurrency = max(1, concurrency)
        self.queue = max(0, queue)
        self.admitted = 0
        self._slots: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def full(self) -> bool:
        return self.admitted >= self.concurrency + self.queue

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._slots is None or self._loop is not loop:
            # One per event loop (a test client may run the same app on a new loop).
            self._slots, self._loop = asyncio.Semaphore(self.concurrency), loop
        return self._slots

    async def acquire(self) -> asyncio.Semaphore:
        """Wait for a decode slot; the semaphore to release it on."""
        slots = self._semaphore()
        await slots.acquire()
        return slots

    def overloaded(self) -> Overloaded:
        return Overloaded(
            f"this worker already holds {self.admitted} uploads "
            f"({self.concurrency} decoding, RECSYS_API_UPLOAD_CONCURRENCY; {self.queue} waiting, "
            "RECSYS_API_UPLOAD_QUEUE); retry in a moment"
        )


def body_headers(scope: Scope) -> tuple[int, bool]:
    """Declared Content-Length (-1 when none or unreadable) and whether the body is chunked."""
    declared = -1
    chunked = False
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                declared = -1
        elif name == b"transfer-encoding":
            chunked = True
    return declared, chunked


class RequestLimitMiddleware:
    """Bounds every request before a route parses a byte of it.

    * Bodies: at most ``max_body_bytes`` (``RECSYS_API_MAX_BODY_BYTES``) on every route but the
      upload, which gets ``upload_max_bytes`` (``RECSYS_UPLOAD_MAX_BYTES``) plus the multipart
      framing. A larger ``Content-Length`` is answered 413 at once; a chunked body is counted
      as it streams in and answered 413 the moment it passes the limit (nothing is buffered).
      A declared length within the limit needs no counting: the server never hands the app
      more than it.
    * Uploads (:class:`UploadQueue`): refused 503 at once when the queue is full; the last
      piece of an admitted upload's body is handed to the route only once a decode slot is
      free, so the route's threads run only for uploads that decode now, and an upload whose
      body has not arrived within ``receive_timeout_s`` is answered 408.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        upload_max_bytes: int,
        uploads: UploadQueue,
        receive_timeout_s: float,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_bytes = upload_max_bytes
        self.max_upload_body = upload_max_bytes + MULTIPART_SLACK
        self.uploads = uploads
        self.receive_timeout_s = receive_timeout_s

    def _body_too_large(self) -> RequestTooLarge:
        return RequestTooLarge(
            f"the request body exceeds the limit of {self.max_body_bytes} bytes "
            "(RECSYS_API_MAX_BODY_BYTES); send fewer examples or exclusions"
        )

    def _upload_too_large(self) -> UploadTooLarge:
        return UploadTooLarge(
            f"upload exceeds the limit of {self.max_bytes} bytes (RECSYS_UPLOAD_MAX_BYTES)"
        )

    def _upload_timeout(self) -> UploadTimeout:
        return UploadTimeout(
            f"the upload did not arrive within {self.receive_timeout_s:g}s "
            "(RECSYS_API_UPLOAD_RECEIVE_TIMEOUT_S); send it again on a faster connection"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == UPLOAD_PATH and scope["method"] == "POST":
            await self._upload(scope, receive, send)
            return
        declared, chunked = body_headers(scope)
        if declared > self.max_body_bytes:
            await scope_error_response(scope, self._body_too_large())(scope, receive, send)
        elif chunked:
            await self._limited(scope, receive, send, self.max_body_bytes, upload=False)
        else:
            await self.app(scope, receive, send)

    async def _upload(self, scope: Scope, receive: Receive, send: Send) -> None:
        declared, _ = body_headers(scope)
        if declared > self.max_upload_body:
            await scope_error_response(scope, self._upload_too_large())(scope, receive, send)
            return
        if self.uploads.full:
            await scope_error_response(scope, self.uploads.overloaded())(scope, receive, send)
            return
        self.uploads.admitted += 1
        try:
            await self._limited(scope, receive, send, self.max_upload_body, upload=True)
        finally:
            self.uploads.admitted -= 1

    async def _limited(
        self, scope: Scope, receive: Receive, send: Send, limit: int, *, upload: bool
    ) -> None:
        """The app with ``receive`` counting the body (and, for uploads, timed and queued)."""
        seen = 0
        refusal: Exception | None = None
        started = False
        body_done = False
        slot: asyncio.Semaphore | None = None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.receive_timeout_s

        async def limited_receive() -> Message:
            nonlocal seen, refusal, slot, body_done
            if refusal is not None:
                return {"type": "http.disconnect"}
            if body_done:  # later calls only wait for the client to go away
                return await receive()
            if upload:
                try:
                    message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
                except TimeoutError:
                    refusal = self._upload_timeout()
                    return {"type": "http.disconnect"}
            else:
                message = await receive()
            if message["type"] != "http.request":
                return message
            seen += len(message.get("body", b""))
            if seen > limit:
                refusal = self._upload_too_large() if upload else self._body_too_large()
                return {"type": "http.disconnect"}
            if not message.get("more_body", False):
                body_done = True
                if upload:
                    # The whole body is here: wait (in the loop, no thread) for a decode slot.
                    slot = await self.uploads.acquire()
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refusal is not None:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if refusal is None:
                raise
        finally:
            if slot is not None:
                slot.release()
        if refusal is not None and not started:
            await scope_error_response(scope, refusal)(scope, receive, send)


def check_type(filename: str | None, content_type: str | None) -> str:
    """The file's extension when name and declared type look like a video, else 415."""
    suffix = Path(filename or "").suffix.lower()
    declared = (content_type or "").split(";")[0].strip().lower()
    if suffix not in VIDEO_EXTENSIONS:
        raise UnsupportedMediaType(
            f"file {filename!r} does not have a video extension "
            f"({', '.join(sorted(VIDEO_EXTENSIONS))})"
        )
    if not (declared.startswith("video/") or declared in GENERIC_TYPES):
        raise UnsupportedMediaType(f"content type {declared!r} is not a video type")
    return suffix


def save_upload(source: IO[bytes], suffix: str, max_bytes: int) -> Path:
    """Copy the upload to a temporary file, enforcing the exact size limit."""
    fd, name = tempfile.mkstemp(prefix="recsys-upload-", suffix=suffix)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            copied = 0
            while chunk := source.read(1 << 20):
                copied += len(chunk)
                if copied > max_bytes:
                    raise UploadTooLarge(
                        f"upload exceeds the limit of {max_bytes} bytes (RECSYS_UPLOAD_MAX_BYTES)"
                    )
                handle.write(chunk)
        if copied == 0:
            raise MediaRejected("the uploaded file is empty")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


@dataclass
class EmbeddedUpload:
    """An uploaded file as the served model sees it, and its tags when they were asked for
    (the ``UploadTagsOut`` shape)."""

    vector: np.ndarray
    modalities: dict[str, np.ndarray]
    tags: dict[str, Any] | None = None


def _features(settings: Settings, path: Path, spec: FeatureSpec) -> VideoFeatures:
    """Stage-A features of the upload; any decode or extraction failure is a 422."""
    from recsys import media
    from recsys.features import FeatureError
    from recsys.stage_a import extract_features

    # Probe, decode and extract all happen in the killable decode worker, under the limit:
    # the upload is untrusted input.
    try:
        features, _ = extract_features(str(path), spec)
    except media.DecodeTimeout as error:
        raise MediaRejected(
            f"decoding took longer than {settings.decode_timeout_s:g}s: {error.reason}"
        ) from error
    except media.MediaError as error:
        raise MediaRejected(f"the upload cannot be decoded: {error.reason}") from error
    except FeatureError as error:
        raise MediaRejected(f"the upload cannot be embedded: {error}") from error
    return features


def _duration_s(settings: Settings, path: Path) -> float | None:
    """The upload's duration (for the spans of its tags), probed in the decode worker."""
    from recsys import media
    from recsys.media.limits import run_isolated

    limits = media.DecodeLimits.from_settings(settings)
    timeout_s = settings.decode_timeout_s
    try:
        if timeout_s is None:
            return media.probe(path, limits).duration_s
        info = run_isolated(
            media.probe, (str(path), limits), path=path, timeout_s=timeout_s, limits=limits
        )
        return info.duration_s
    except media.MediaError as error:
        raise MediaRejected(f"the upload cannot be probed: {error.reason}") from error


def no_tags(reason: str) -> dict[str, Any]:
    """The ``tags`` of an answer when nothing could be predicted, with the reason."""
    return {
        "predicted": [],
        "tags_model": None,
        "abstained": True,
        "segments_disagree": False,
        "segment_labels": [],
        "unavailable": reason,
    }


def usable_tags_model(settings: Settings, served_model: str) -> TagModel | str:
    """The active tags model when this server can predict with it, else why not (words a
    client may read: no server paths)."""
    from recsys.tags import NoTagsModel, Source, TagsError, load_tag_model
    from recsys.tags.catalog import check_inputs

    try:
        model = load_tag_model(settings)
        check_inputs(settings, model)
    except NoTagsModel:
        return "no tags model has been trained on this catalog; `recsys tags train` trains one"
    except TagsError as error:
        log.warning("the tags model cannot tag uploads: %s", error)
        return public_text(str(error)) or "the tags model cannot be used"
    if model.source == Source.EMBEDDING and model.model_version != served_model:
        return (
            f"tags model {model.version} reads the embeddings of model {model.model_version}, "
            f"the index serves model {served_model}; the next `recsys embed` of the active "
            "model refits it"
        )
    return model


def predict_upload_tags(
    settings: Settings,
    model: TagModel,
    path: Path,
    features: VideoFeatures,
    vector: np.ndarray,
) -> dict[str, Any]:
    """The upload's tags by ``model``, best first, with spans in seconds. Features of another
    extractor than the tags model's are extracted again (the same file, the same limits)."""
    from recsys.features import get_extractor
    from recsys.stage_a import FeatureSpec
    from recsys.tags import Source, predict_videos

    extractor = get_extractor(model.extractor, settings=settings)
    if (features.extractor, features.extractor_version) != (
        extractor.name,
        model.extractor_version,
    ):
        spec = FeatureSpec.for_model(settings, model.extractor, model.extractor_version)
        features = _features(settings, path, spec)
    embeddings = vector[None, :] if model.source == Source.EMBEDDING else None
    found = predict_videos(model, [features], [_duration_s(settings, path)], embeddings)[0]
    return {
        "predicted": [p.as_dict() | {"tags_model": model.version} for p in found.predictions],
        "tags_model": model.version,
        "abstained": found.abstained,
        "segments_disagree": found.segments_disagree,
        "segment_labels": list(found.segment_labels),
        "unavailable": None,
    }


def embed_upload(
    holder: IndexHolder,
    state: ServingState,
    path: Path,
    gate: threading.Semaphore,
    *,
    tags: bool = False,
) -> EmbeddedUpload:
    """Vector and per-modality vectors of an uploaded file with the served model, and with
    ``tags`` its predicted tags."""
    from recsys.stage_a import FeatureSpec

    settings = holder.settings
    try:
        embedder = holder.embedder(state.model_version)
    except Exception as error:  # noqa: BLE001 - any load failure means "cannot embed now"
        log.warning("model %s cannot be loaded for uploads: %s", state.model_version, error)
        raise ServiceUnavailable(
            f"model {state.model_version} of the served index cannot be loaded: {error}"
        ) from error
    spec = FeatureSpec.for_model(settings, embedder.extractor, str(embedder.extractor_version))
    with gate:
        features = _features(settings, path, spec)
        vectors, modalities = embedder.embed([features])
        vector = np.asarray(vectors, dtype=np.float32)[0]
        embedded = EmbeddedUpload(
            vector, {name: np.asarray(m, dtype=np.float32)[0] for name, m in modalities.items()}
        )
        if tags:
            model = usable_tags_model(settings, state.model_version)
            embedded.tags = (
                no_tags(model)
                if isinstance(model, str)
                else predict_upload_tags(settings, model, path, features, vector)
            )
    return embedded


def discard(path: Path) -> None:
    path.unlink(missing_ok=True)
