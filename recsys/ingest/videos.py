"""Registering videos: hash, probe (in a killable worker), thumbnail, upsert one at a time."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from recsys.db import Database
from recsys.db.models import MediaRootKind, Video, VideoAlias, VideoStatus
from recsys.ingest.discovery import Candidate, discover
from recsys.ingest.report import IngestItem, IngestReport, Outcome
from recsys.media import MediaError, ProbeResult, content_hash, inspect_video
from recsys.media.limits import DecodeLimits
from recsys.media_roots import placement_problem, record_root, recorded_roots
from recsys.settings import Settings
from recsys.thumbnails import THUMBNAIL_MAX_SIDE, save_thumbnail, thumbnail_exists

log = logging.getLogger(__name__)


@dataclass
class Inspection:
    candidate: Candidate
    content_hash: str | None = None
    probe: ProbeResult | None = None
    thumbnail: np.ndarray | None = None
    error: str | None = None
    copy_of: str | None = None  # the video_id of a registered video with this content


def _inspect(
    candidate: Candidate,
    settings: Settings,
    known_hash: str | None,
    need_thumbnail: bool,
    copies: dict[str, str] | None = None,
) -> Inspection:
    """Hash and probe one file; ``copies`` ({content hash: video_id}) names the contents
    that are registered already: such a file is a copy and is not decoded."""
    result = Inspection(candidate)
    if candidate.problem is not None:
        result.error = candidate.problem
        return result
    assert candidate.path is not None
    try:
        result.content_hash = content_hash(candidate.path)
        if copies is not None and result.content_hash in copies:
            result.copy_of = copies[result.content_hash]
            return result
        if result.content_hash == known_hash and not need_thumbnail:
            return result  # unchanged and complete: no decode at all
        probe, frame = inspect_video(
            candidate.path,
            thumbnail_max_side=THUMBNAIL_MAX_SIDE,
            timeout_s=settings.decode_timeout_s,
            limits=DecodeLimits.from_settings(settings),
        )
        result.probe = probe
        result.thumbnail = frame
        if not probe.has_video:
            result.error = "no video stream (audio-only file)"
    except MediaError as error:
        result.error = error.reason
    return result


# --------------------------------------------------------------------------- registration


def _apply_probe(video: Video, probe: ProbeResult) -> None:
    video.size_bytes = probe.size_bytes
    video.duration_s = probe.duration_s
    video.fps = probe.fps
    video.width = probe.width
    video.height = probe.height
    video.rotation = probe.rotation
    video.video_codec = probe.video_codec
    video.audio_codec = probe.audio_codec
    video.has_audio = probe.has_audio


def _apply_metadata(video: Video, candidate: Candidate) -> bool:
    changed = False
    for name in ("title", "category", "channel", "tags"):
        value = getattr(candidate, name)
        if value is not None and getattr(video, name) != value:
            setattr(video, name, value)
            changed = True
    if video.title is None:
        video.title = candidate.video_id
        changed = True
    if video.uri != candidate.uri:
        video.uri = candidate.uri
        changed = True
    return changed


def _register(settings: Settings, database: Database, inspection: Inspection) -> IngestItem:
    candidate = inspection.candidate
    with database.session() as session:
        video = session.scalars(select(Video).where(Video.video_id == candidate.video_id)).first()
        new = video is None
        if video is None:
            video = Video(video_id=candidate.video_id, uri=candidate.uri, tags=[])
            session.add(video)
        elif video.status == VideoStatus.DELETED.value:
            return IngestItem(
                candidate.source,
                candidate.video_id,
                Outcome.SKIPPED,
                "video is marked deleted in the catalog; left as is",
            )
        previous_hash = video.content_hash
        previous_status = video.status
        metadata_changed = _apply_metadata(video, candidate)
        if inspection.content_hash is not None:
            video.content_hash = inspection.content_hash
        if inspection.error is not None:
            video.status = VideoStatus.FAILED.value
            video.status_reason = inspection.error
            if inspection.probe is not None:
                _apply_probe(video, inspection.probe)
            return IngestItem(
                candidate.source, candidate.video_id, Outcome.FAILED, inspection.error
            )
        if inspection.probe is not None:
            _apply_probe(video, inspection.probe)
        if inspection.thumbnail is not None and inspection.content_hash is not None:
            video.thumbnail_path = save_thumbnail(
                settings, inspection.content_hash, inspection.thumbnail
            )
        if new:
            video.status = VideoStatus.READY.value
            video.status_reason = None
            return IngestItem(candidate.source, candidate.video_id, Outcome.ADDED)
        if previous_hash is not None and previous_hash != inspection.content_hash:
            video.status = VideoStatus.STALE.value
            video.status_reason = "file content changed since it was registered"
            return IngestItem(
                candidate.source, candidate.video_id, Outcome.STALE, video.status_reason
            )
        if previous_status == VideoStatus.FAILED.value:
            video.status = VideoStatus.READY.value
            video.status_reason = None
            return IngestItem(
                candidate.source, candidate.video_id, Outcome.UPDATED, "no longer failing"
            )
        if metadata_changed:
            return IngestItem(
                candidate.source, candidate.video_id, Outcome.UPDATED, "metadata updated"
            )
        return IngestItem(candidate.source, candidate.video_id, Outcome.UNCHANGED)


def _record_alias(database: Database, inspection: Inspection, original: str) -> IngestItem:
    """Record the candidate's file as another path of the video ``original``."""
    candidate = inspection.candidate
    with database.session() as session:
        video = session.scalars(select(Video).where(Video.video_id == original)).one()
        exists = session.scalars(select(VideoAlias.id).where(VideoAlias.uri == candidate.uri))
        same_file = video.uri == candidate.uri
        if not same_file and exists.first() is None:
            session.add(VideoAlias(video=video.id, uri=candidate.uri))
    done = "it is that video's file" if same_file else "recorded as an alias of it"
    reason = (
        f"the same content as video {original!r} ({video.uri}): {done}, not a second video "
        "(--allow-copies registers copies as videos of their own)"
    )
    log.warning("%s: %s", candidate.source, reason)
    return IngestItem(candidate.source, original, Outcome.ALIAS, reason)


def ingest_paths(
    settings: Settings,
    database: Database,
    paths: Iterable[str | Path],
    *,
    workers: int = 2,
    allow_copies: bool = False,
    progress: Callable[[IngestItem], None] | None = None,
) -> IngestReport:
    """Register every video found under ``paths``; never raises for a bad video or row.

    ``workers`` files are hashed and probed at once (each probe in its own killable worker
    process); database writes happen one video per transaction in the calling thread.

    One content is one video: a new file with the bytes of a registered video (or of an
    earlier file of this run) is recorded as an alias of it, with a warning, unless
    ``allow_copies``. Ids of files no manifest names are derived the same way however the file
    was found (see :func:`~recsys.ingest.discovery.discover`).

    Files outside the media roots are refused before a byte is read (see
    :mod:`recsys.media_roots`): with ``RECSYS_MEDIA_ROOTS`` set, its folders; otherwise the
    inputs of this run (scanned folders, manifests' folders, named files) and the roots earlier
    runs recorded. The input of each registered video is recorded as a root.
    """
    report = IngestReport()
    with database.session() as session:
        known = {
            row.video_id: (row.content_hash, row.thumbnail_path, row.status)
            for row in session.execute(
                select(Video.video_id, Video.content_hash, Video.thumbnail_path, Video.status)
            )
        }
        recorded = set(recorded_roots(session))
    configured = settings.resolved_media_roots
    candidates = discover(
        paths, report, configured or sorted(recorded), configured=bool(configured)
    )
    for item in report.items:
        if progress is not None:
            progress(item)
    inputs = {c.root for c in candidates if c.root is not None}
    roots = set(configured) or (recorded | inputs)
    # {content hash: video_id} of the registered videos (copies of them become aliases)
    contents: dict[str, str] | None = None
    if not allow_copies:
        contents = {}
        for video_id, (digest, _, status) in sorted(known.items()):
            if digest is not None and status != VideoStatus.DELETED.value:
                contents.setdefault(digest, video_id)

    def placement(candidate: Candidate) -> str | None:
        if candidate.problem is not None or candidate.path is None:
            return None
        scanned = candidate.root if candidate.root_kind == MediaRootKind.DIRECTORY else None
        return placement_problem(candidate.path, settings=settings, roots=roots, scanned=scanned)

    def work(candidate: Candidate) -> Inspection:
        previous = known.get(candidate.video_id)
        if previous is not None and previous[2] == VideoStatus.DELETED.value:
            return Inspection(candidate)  # skipped by _register: not worth hashing or probing
        refused = placement(candidate)
        if refused is not None:
            return Inspection(candidate, error=refused)
        known_hash = None
        need_thumbnail = True
        if previous is not None and previous[2] != VideoStatus.FAILED.value:
            known_hash = previous[0]
            need_thumbnail = not (
                previous[1] and previous[0] and thumbnail_exists(settings, previous[0])
            )
        copies = None if previous is not None or contents is None else dict(contents)
        return _inspect(candidate, settings, known_hash, need_thumbnail, copies)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for inspection in pool.map(work, candidates):
            try:
                digest = inspection.content_hash
                original = inspection.copy_of
                new = inspection.candidate.video_id not in known
                if original is None and contents is not None and new and digest is not None:
                    original = contents.get(digest)  # a copy of an earlier file of this run
                if original is not None:
                    report.items.append(_record_alias(database, inspection, original))
                    if progress is not None:
                        progress(report.items[-1])
                    continue
                item = _register(settings, database, inspection)
                if contents is not None and digest is not None and item.outcome == Outcome.ADDED:
                    contents.setdefault(digest, inspection.candidate.video_id)
                root, kind = inspection.candidate.root, inspection.candidate.root_kind
                registered = item.outcome not in (Outcome.FAILED, Outcome.SKIPPED)
                if registered and root is not None and kind is not None and root not in recorded:
                    # A concurrent ingest may record it first: that is as good.
                    with contextlib.suppress(IntegrityError), database.session() as session:
                        record_root(session, root, kind)
                    recorded.add(root)
            except Exception as error:  # noqa: BLE001 - one video's DB trouble fails alone
                log.exception("registering %s failed", inspection.candidate.source)
                item = IngestItem(
                    inspection.candidate.source,
                    inspection.candidate.video_id,
                    Outcome.FAILED,
                    f"could not be registered: {type(error).__name__}: {error}",
                )
            report.items.append(item)
            if progress is not None:
                progress(item)
    return report
