"""Uploaded videos: size limit while the body streams in, type checks, and the on-the-fly
embedding (probe → decode with a time limit → features → the served model's embedder)."""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import IO

import numpy as np
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import (
    MediaRejected,
    ServiceUnavailable,
    UnsupportedMediaType,
    UploadTooLarge,
    error_response,
)
from api.index_holder import IndexHolder
from api.serving_state import ServingState
from recsys.ingest import VIDEO_EXTENSIONS

log = logging.getLogger(__name__)

UPLOAD_PATH = "/similar/upload"
# Multipart framing (boundaries, part headers) on top of the file itself.
MULTIPART_SLACK = 64 * 1024
GENERIC_TYPES = frozenset(
    {"application/octet-stream", "application/mp4", "application/ogg", "application/x-matroska", ""}
)


class UploadLimitMiddleware:
    """Answers 413 as soon as an upload's body exceeds the limit, before it is all buffered."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_body = max_bytes + MULTIPART_SLACK
        self.max_bytes = max_bytes

    def _too_large(self) -> UploadTooLarge:
        return UploadTooLarge(
            f"upload exceeds the limit of {self.max_bytes} bytes (RECSYS_UPLOAD_MAX_BYTES)"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != UPLOAD_PATH:
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_body:
                    await error_response(self._too_large())(scope, receive, send)
                    return
        seen = 0
        exceeded = False
        started = False

        async def limited_receive() -> Message:
            nonlocal seen, exceeded
            if exceeded:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    exceeded = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            await error_response(self._too_large())(scope, receive, send)


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


def embed_upload(
    holder: IndexHolder, state: ServingState, path: Path, gate: threading.Semaphore
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Vector and per-modality vectors of an uploaded file with the served model."""
    from recsys import media
    from recsys.features import FeatureError
    from recsys.stage_a import FeatureSpec, extract_features

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
        vectors, modalities = embedder.embed([features])
    vector = np.asarray(vectors, dtype=np.float32)[0]
    return vector, {name: np.asarray(m, dtype=np.float32)[0] for name, m in modalities.items()}


def discard(path: Path) -> None:
    path.unlink(missing_ok=True)
