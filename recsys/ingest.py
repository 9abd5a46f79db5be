"""Registering videos in the catalog (``videos``) and loading related pairs.

``ingest_paths`` takes files, directories (searched recursively by extension) and manifest CSVs
(column ``file`` or ``uri``, optional ``video_id,title,category,tags``; relative paths are
relative to the manifest's folder). Each video is hashed, probed (in a killable worker process,
under ``settings.decode_timeout_s``), given a thumbnail of its middle frame and upserted:

* new video_id                        -> ``ready`` (or ``failed`` with the reason)
* same content hash as registered     -> no-op (``unchanged``); new manifest metadata is applied
* different content hash              -> new hash and probe fields, status ``stale``
* a failure                           -> status ``failed`` and ``status_reason``; the rest go on

Failures that have no video to attach to (an unreadable manifest, a CSV row without a file, a
duplicate id inside one batch, a non-UTF-8 row) are reported in the ``IngestReport`` only.
Videos marked ``deleted`` are left deleted. Every video is committed on its own, so an
interrupted ingest keeps what it did and a re-run finishes the rest.

Video ids: a manifest's ``video_id`` column; otherwise the file stem for files named on the
command line and manifest rows, and the path relative to the searched directory (without the
extension) for files found in a directory.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np
from sqlalchemy import select

from recsys.db import Database
from recsys.db.models import RelatedPair, Video, VideoStatus
from recsys.media import MediaError, ProbeResult, content_hash, inspect_video
from recsys.settings import Settings
from recsys.thumbnails import THUMBNAIL_MAX_SIDE, save_thumbnail, thumbnail_exists

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = frozenset(
    {
        ".mp4",
        ".m4v",
        ".mov",
        ".mkv",
        ".webm",
        ".avi",
        ".mpg",
        ".mpeg",
        ".ts",
        ".mts",
        ".flv",
        ".wmv",
        ".3gp",
        ".ogv",
    }
)
MANIFEST_EXTENSIONS = frozenset({".csv"})
TAG_SEPARATORS = ("|", ";", ",")

# Outcomes of one ingest item.
ADDED, UPDATED, UNCHANGED, STALE, FAILED, SKIPPED = (
    "added",
    "updated",
    "unchanged",
    "stale",
    "failed",
    "skipped",
)


@dataclass
class Candidate:
    """One video to register, as found on the command line, in a directory or a manifest."""

    source: str  # where it came from, for messages: a path or "manifest.csv row 7"
    video_id: str
    path: Path | None  # None when the URI is not a local file
    uri: str
    title: str | None = None
    category: str | None = None
    tags: list[str] | None = None
    problem: str | None = None  # known failure before probing (e.g. remote URI)


@dataclass
class IngestItem:
    source: str
    video_id: str | None
    outcome: str
    reason: str | None = None


@dataclass
class IngestReport:
    items: list[IngestItem] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        result = {k: 0 for k in (ADDED, UPDATED, UNCHANGED, STALE, FAILED, SKIPPED)}
        for item in self.items:
            result[item.outcome] += 1
        return result

    @property
    def failures(self) -> list[IngestItem]:
        return [i for i in self.items if i.outcome == FAILED]

    @property
    def ok(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict[str, Any]:
        return {"counts": self.counts(), "items": [asdict(i) for i in self.items]}


# --------------------------------------------------------------------------- discovery


def _split_tags(value: str | None) -> list[str] | None:
    if value is None or not value.strip():
        return None
    for separator in TAG_SEPARATORS:
        if separator in value:
            return [t.strip() for t in value.split(separator) if t.strip()]
    return [value.strip()]


def _has_surrogates(value: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in value)


def _resolve_uri(value: str, base: Path) -> tuple[Path | None, str, str | None]:
    """(local path or None, stored uri, problem) of a manifest ``file``/``uri`` value."""
    parsed = urlparse(value)
    if parsed.scheme == "file":
        path = Path(unquote(parsed.path))
    elif parsed.scheme and len(parsed.scheme) > 1:
        return None, value, f"URI scheme {parsed.scheme!r} is not supported; ingest local files"
    else:
        path = Path(value)
    if not path.is_absolute():
        path = base / path
    path = path.resolve()
    return path, str(path), None


class _UnreadableCsv(Exception):
    """A CSV file that cannot be read at all (the message says why)."""


def _open_csv(path: Path) -> tuple[csv.DictReader[str], list[str]]:
    """A dict reader over a UTF-8 (BOM tolerated) CSV file and its stripped header.

    Undecodable bytes are kept as surrogates so each row can be rejected alone; a file that
    cannot be read, is not CSV or has an undecodable header raises :class:`_UnreadableCsv`.
    """
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise _UnreadableCsv(f"cannot be read: {error.strerror or error}") from None
    text = raw.decode("utf-8-sig", errors="surrogateescape")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in (reader.fieldnames or [])]
    except csv.Error as error:
        raise _UnreadableCsv(f"is not a CSV file: {error}") from None
    if any(_has_surrogates(h) for h in header):
        raise _UnreadableCsv("header is not valid UTF-8 text")
    reader.fieldnames = header
    return reader, header


def read_manifest(path: Path, report: IngestReport) -> list[Candidate]:
    """Candidates of a manifest CSV; bad rows and a bad header go to ``report``."""
    try:
        reader, header = _open_csv(path)
    except _UnreadableCsv as error:
        report.items.append(IngestItem(str(path), None, FAILED, f"manifest {error}"))
        return []
    location = "file" if "file" in header else "uri" if "uri" in header else None
    if location is None:
        shown = ", ".join(header) if header else "none (empty file)"
        report.items.append(
            IngestItem(
                str(path),
                None,
                FAILED,
                f"manifest has no 'file' or 'uri' column (columns: {shown})",
            )
        )
        return []
    base = path.parent.resolve()
    candidates: list[Candidate] = []
    seen: dict[str, int] = {}
    row_number = 1
    try:
        for row in reader:
            row_number = reader.line_num
            source = f"{path} row {row_number}"
            values = {k: (v or "").strip() for k, v in row.items() if isinstance(k, str)}
            nul = [k for k, v in values.items() if "\x00" in v]
            if nul:
                report.items.append(
                    IngestItem(source, None, FAILED, f"row has a NUL byte (column {nul[0]!r})")
                )
                continue
            bad = [k for k, v in values.items() if _has_surrogates(v)]
            if bad:
                report.items.append(
                    IngestItem(
                        source,
                        None,
                        FAILED,
                        f"row is not valid UTF-8 text (column {bad[0]!r}); fix the encoding",
                    )
                )
                continue
            if not any(values.values()):
                continue  # blank line
            location_value = values.get(location, "")
            if not location_value:
                report.items.append(
                    IngestItem(
                        source, values.get("video_id") or None, FAILED, f"empty {location!r} value"
                    )
                )
                continue
            local, uri, problem = _resolve_uri(location_value, base)
            video_id = values.get("video_id") or Path(urlparse(location_value).path).stem
            if not video_id:
                report.items.append(
                    IngestItem(source, None, FAILED, "cannot derive a video_id from the row")
                )
                continue
            if video_id in seen:
                report.items.append(
                    IngestItem(
                        source,
                        video_id,
                        FAILED,
                        f"duplicate video_id {video_id!r} (first in row {seen[video_id]}); "
                        "row ignored",
                    )
                )
                continue
            seen[video_id] = row_number
            tags = _split_tags(values.get("tags"))
            if tags is None and values.get("label"):
                tags = [values["label"]]
            candidates.append(
                Candidate(
                    source=source,
                    video_id=video_id,
                    path=local,
                    uri=uri,
                    title=values.get("title") or values.get("label") or None,
                    category=values.get("category") or None,
                    tags=tags,
                    problem=problem,
                )
            )
    except csv.Error as error:
        report.items.append(
            IngestItem(f"{path} row {row_number}", None, FAILED, f"CSV syntax error: {error}")
        )
    return candidates


def discover(paths: Iterable[str | Path], report: IngestReport) -> list[Candidate]:
    """Expand command-line paths into candidates (directories recursively, manifests read)."""
    candidates: list[Candidate] = []
    for given in paths:
        if "\x00" in str(given):
            report.items.append(IngestItem(repr(str(given)), None, FAILED, "path has a NUL byte"))
            continue
        path = Path(given).expanduser()
        if path.is_dir():
            root = path.resolve()
            for found in sorted(root.rglob("*")):
                if found.is_file() and found.suffix.lower() in VIDEO_EXTENSIONS:
                    video_id = found.relative_to(root).with_suffix("").as_posix()
                    candidates.append(Candidate(str(found), video_id, found, str(found)))
        elif path.suffix.lower() in MANIFEST_EXTENSIONS:
            if not path.exists():
                report.items.append(IngestItem(str(path), None, FAILED, "manifest not found"))
                continue
            candidates.extend(read_manifest(path, report))
        else:
            resolved = path.resolve()
            candidates.append(Candidate(str(path), path.stem, resolved, str(resolved)))
    # One video_id per batch: the first occurrence wins, later ones are reported.
    unique: dict[str, Candidate] = {}
    for candidate in candidates:
        first = unique.get(candidate.video_id)
        if first is None:
            unique[candidate.video_id] = candidate
        elif first.uri != candidate.uri:
            report.items.append(
                IngestItem(
                    candidate.source,
                    candidate.video_id,
                    FAILED,
                    f"duplicate video_id {candidate.video_id!r}: already taken by {first.source}",
                )
            )
    return list(unique.values())


# --------------------------------------------------------------------------- inspection


@dataclass
class Inspection:
    candidate: Candidate
    content_hash: str | None = None
    probe: ProbeResult | None = None
    thumbnail: np.ndarray | None = None
    error: str | None = None


def _inspect(
    candidate: Candidate, settings: Settings, known_hash: str | None, need_thumbnail: bool
) -> Inspection:
    result = Inspection(candidate)
    if candidate.problem is not None:
        result.error = candidate.problem
        return result
    assert candidate.path is not None
    try:
        result.content_hash = content_hash(candidate.path)
        if result.content_hash == known_hash and not need_thumbnail:
            return result  # unchanged and complete: no decode at all
        probe, frame = inspect_video(
            candidate.path,
            thumbnail_max_side=THUMBNAIL_MAX_SIDE,
            timeout_s=settings.decode_timeout_s,
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
    for name in ("title", "category", "tags"):
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
                SKIPPED,
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
            return IngestItem(candidate.source, candidate.video_id, FAILED, inspection.error)
        if inspection.probe is not None:
            _apply_probe(video, inspection.probe)
        if inspection.thumbnail is not None and inspection.content_hash is not None:
            video.thumbnail_path = save_thumbnail(
                settings, inspection.content_hash, inspection.thumbnail
            )
        if new:
            video.status = VideoStatus.READY.value
            video.status_reason = None
            return IngestItem(candidate.source, candidate.video_id, ADDED)
        if previous_hash is not None and previous_hash != inspection.content_hash:
            video.status = VideoStatus.STALE.value
            video.status_reason = "file content changed since it was registered"
            return IngestItem(candidate.source, candidate.video_id, STALE, video.status_reason)
        if previous_status == VideoStatus.FAILED.value:
            video.status = VideoStatus.READY.value
            video.status_reason = None
            return IngestItem(candidate.source, candidate.video_id, UPDATED, "no longer failing")
        if metadata_changed:
            return IngestItem(candidate.source, candidate.video_id, UPDATED, "metadata updated")
        return IngestItem(candidate.source, candidate.video_id, UNCHANGED)


def ingest_paths(
    settings: Settings,
    database: Database,
    paths: Iterable[str | Path],
    *,
    workers: int = 2,
    progress: Callable[[IngestItem], None] | None = None,
) -> IngestReport:
    """Register every video found under ``paths``; never raises for a bad video or row.

    ``workers`` files are hashed and probed at once (each probe in its own killable worker
    process); database writes happen one video per transaction in the calling thread.
    """
    report = IngestReport()
    candidates = discover(paths, report)
    for item in report.items:
        if progress is not None:
            progress(item)
    with database.session() as session:
        known = {
            row.video_id: (row.content_hash, row.thumbnail_path, row.status)
            for row in session.execute(
                select(Video.video_id, Video.content_hash, Video.thumbnail_path, Video.status)
            )
        }

    def work(candidate: Candidate) -> Inspection:
        previous = known.get(candidate.video_id)
        if previous is not None and previous[2] == VideoStatus.DELETED.value:
            return Inspection(candidate)  # skipped by _register: not worth hashing or probing
        known_hash = None
        need_thumbnail = True
        if previous is not None and previous[2] != VideoStatus.FAILED.value:
            known_hash = previous[0]
            need_thumbnail = not (
                previous[1] and previous[0] and thumbnail_exists(settings, previous[0])
            )
        return _inspect(candidate, settings, known_hash, need_thumbnail)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for inspection in pool.map(work, candidates):
            try:
                item = _register(settings, database, inspection)
            except Exception as error:  # noqa: BLE001 - one video's DB trouble fails alone
                log.exception("registering %s failed", inspection.candidate.source)
                item = IngestItem(
                    inspection.candidate.source,
                    inspection.candidate.video_id,
                    FAILED,
                    f"could not be registered: {type(error).__name__}: {error}",
                )
            report.items.append(item)
            if progress is not None:
                progress(item)
    return report


# --------------------------------------------------------------------------- related pairs


@dataclass
class RelatedReport:
    source: str
    pairs: int = 0  # distinct pairs written (inserted or replaced)
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rows: int = 0
    unknown_ids: list[str] = field(default_factory=list)
    self_pairs: int = 0
    bad_rows: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.bad_rows and not self.unknown_ids

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _related_rows(path: Path, report: RelatedReport) -> Iterator[tuple[str, str, float, str]]:
    try:
        reader, header = _open_csv(path)
    except _UnreadableCsv as error:
        report.bad_rows.append(f"{path}: {error}")
        return
    missing = [c for c in ("video_a", "video_b") if c not in header]
    if missing:
        shown = ", ".join(header) if header else "none (empty file)"
        report.bad_rows.append(f"{path}: missing column(s) {', '.join(missing)} (columns: {shown})")
        return
    try:
        for row in reader:
            pair = _related_pair(row, f"{path} row {reader.line_num}", report)
            if pair is not None:
                yield pair
    except csv.Error as error:
        report.bad_rows.append(f"{path} row {reader.line_num}: CSV syntax error: {error}")


def _related_pair(
    row: dict[str, str], where: str, report: RelatedReport
) -> tuple[str, str, float, str] | None:
    """One co-watch row checked, or None with the reason recorded."""
    report.rows += 1
    a = (row.get("video_a") or "").strip()
    b = (row.get("video_b") or "").strip()
    if _has_surrogates(a + b + (row.get("weight") or "") + (row.get("source") or "")):
        report.bad_rows.append(f"{where}: not valid UTF-8 text")
        return None
    if not a or not b:
        report.bad_rows.append(f"{where}: empty video_a or video_b")
        return None
    raw_weight = (row.get("weight") or "").strip()
    try:
        weight = float(raw_weight) if raw_weight else 1.0
    except ValueError:
        report.bad_rows.append(f"{where}: weight {raw_weight!r} is not a number")
        return None
    if not np.isfinite(weight) or weight <= 0:
        report.bad_rows.append(f"{where}: weight must be a positive number, got {weight}")
        return None
    return a, b, weight, (row.get("source") or "").strip() or report.source


def load_related(
    settings: Settings, database: Database, csv_path: str | Path, source: str = "cowatch"
) -> RelatedReport:
    """Load ``video_a,video_b[,weight][,source]`` pairs (external video ids).

    Pairs are undirected: (a, b) and (b, a) are one pair. Repeated rows inside the file are
    summed; the file's total then *replaces* the stored weight of that (pair, source), so
    loading the same file twice changes nothing. Unknown ids and bad rows are reported.
    """
    del settings  # kept for a uniform library signature
    path = Path(csv_path)
    report = RelatedReport(source=source)
    if not path.is_file():
        report.bad_rows.append(f"{path}: file not found")
        return report
    rows = list(_related_rows(path, report))
    external = sorted({a for a, _, _, _ in rows} | {b for _, b, _, _ in rows})
    with database.session() as session:
        ids: dict[str, int] = {}
        for start in range(0, len(external), 500):
            chunk = external[start : start + 500]
            for video_id, internal in session.execute(
                select(Video.video_id, Video.id).where(Video.video_id.in_(chunk))
            ):
                ids[video_id] = internal
        report.unknown_ids = [v for v in external if v not in ids]
        totals: dict[tuple[int, int, str], float] = {}
        for a, b, weight, pair_source in rows:
            if a not in ids or b not in ids:
                continue
            ia, ib = ids[a], ids[b]
            if ia == ib:
                report.self_pairs += 1
                continue
            key = (min(ia, ib), max(ia, ib), pair_source)
            totals[key] = totals.get(key, 0.0) + weight
        existing = {
            (p.video_a, p.video_b, p.source): p
            for p in session.scalars(
                select(RelatedPair).where(
                    RelatedPair.source.in_(sorted({k[2] for k in totals}) or [source])
                )
            )
        }
        for key, weight in sorted(totals.items()):
            pair = existing.get(key)
            if pair is None:
                session.add(
                    RelatedPair(video_a=key[0], video_b=key[1], source=key[2], weight=weight)
                )
                report.inserted += 1
            elif pair.weight != weight:
                pair.weight = weight
                report.updated += 1
            else:
                report.unchanged += 1
        report.pairs = len(totals)
    return report
