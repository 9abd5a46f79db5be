"""Media roots: the folders (and files) whose videos may be registered and served.

A catalog URI is only a string someone wrote into a manifest; the server must not hand out
whatever file it names. So a video's file is served (``GET /media/...``) only when

* the video is servable (``ready`` or ``stale``; never ``failed`` or ``deleted``),
* its real path (every symlink resolved, :func:`servable_path`) is a regular file under a media
  root, and
* it is not part of the engine's own state under ``RECSYS_HOME`` (the database, features,
  embeddings, models, indexes, weights, runs, thumbnails: :func:`is_reserved`).

The media roots are ``RECSYS_MEDIA_ROOTS`` when it is set. Otherwise they are what ingest
recorded (table ``media_roots``): every folder it scanned, the folder of every manifest it read
and every file named on its command line, once a video from there was registered. Ingest applies
the same rule before it registers anything (:func:`placement_problem`): a manifest row whose file
lies outside the roots (its manifest's folder, the other inputs of the run, the recorded roots),
a symlink in a scanned folder that points out of it, and a file of the engine's state are
refused with the reason. A manifest may still list files anywhere: name their folders in
``RECSYS_MEDIA_ROOTS`` (or ingest those folders).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import unquote, urlparse

from sqlalchemy import select
from sqlalchemy.orm import Session

from recsys.db.models import MediaRoot, MediaRootKind, VideoStatus
from recsys.settings import Settings

#: Statuses whose files may be served.
SERVABLE_STATUSES = frozenset({VideoStatus.READY.value, VideoStatus.STALE.value})


def local_path(uri: str) -> Path | None:
    """The local filesystem path of a catalog URI (a plain path or ``file://``), else None."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme in ("", "local") or (len(parsed.scheme) == 1 and uri[1:2] == ":"):
        return Path(uri)
    return None


def is_under(path: Path, roots: Iterable[Path]) -> bool:
    """Whether ``path`` is one of ``roots`` or lies inside one (plain path comparison: both
    sides must already be real paths). Costs the depth of ``path``, not the number of roots."""
    root_set = roots if isinstance(roots, (set, frozenset)) else set(roots)
    return path in root_set or any(parent in root_set for parent in path.parents)


def _state_dirs(settings: Settings) -> list[Path]:
    dirs = [
        settings.features_dir,
        settings.embeddings_dir,
        settings.models_dir,
        settings.indexes_dir,
        settings.thumbnails_dir,
        settings.weights_dir,
        settings.runs_dir,
    ]
    return [Path(os.path.realpath(d)) for d in dirs]


def _sqlite_file(settings: Settings) -> Path | None:
    url = settings.resolved_database_url
    if not url.startswith("sqlite:///"):
        return None
    name = url[len("sqlite:///") :].split("?", 1)[0]
    return Path(os.path.realpath(name)) if name and name != ":memory:" else None


def is_reserved(real: Path, settings: Settings) -> bool:
    """Whether the real path ``real`` belongs to the engine's state: a file at the top of the
    home (the SQLite database and its journals, pointers, locks), anything in the home's state
    folders, or the SQLite database wherever ``RECSYS_DATABASE_URL`` puts it."""
    home = Path(os.path.realpath(settings.resolved_home))
    if real.parent == home or is_under(real, _state_dirs(settings)):
        return True
    database = _sqlite_file(settings)
    return (
        database is not None
        and real.parent == database.parent
        and (real.name.startswith(database.name))
    )


def recorded_roots(session: Session) -> list[Path]:
    """The roots ingest recorded, as stored (real paths)."""
    return [Path(p) for p in session.scalars(select(MediaRoot.path).order_by(MediaRoot.path))]


def allowed_roots(settings: Settings, session: Session) -> list[Path]:
    """The media roots in force: ``RECSYS_MEDIA_ROOTS`` when set, else the recorded ones."""
    return settings.resolved_media_roots or recorded_roots(session)


def under_allowed_root(real: Path, settings: Settings, session: Session) -> bool:
    """Whether the real path ``real`` lies under a media root in force (one indexed lookup of
    its ancestors when the roots are the recorded ones, however many there are)."""
    if settings.resolved_media_roots:
        return is_under(real, settings.resolved_media_roots)
    candidates = [str(real), *(str(parent) for parent in real.parents)]
    found = session.scalar(select(MediaRoot.id).where(MediaRoot.path.in_(candidates)).limit(1))
    return found is not None


def record_root(session: Session, path: Path, kind: MediaRootKind) -> None:
    """Record ``path`` (a real path) as a media root; a no-op when it is recorded already.
    (A concurrent ingest may record it between the check and the commit: the commit then
    raises ``IntegrityError``, which the caller may ignore.)"""
    text = str(path)
    if session.scalar(select(MediaRoot.id).where(MediaRoot.path == text)) is None:
        session.add(MediaRoot(path=text, kind=kind.value))


def real_path(path: Path) -> Path | None:
    """``path`` with every symlink resolved, when it exists; None otherwise."""
    try:
        return path.resolve(strict=True)
    except (OSError, RuntimeError):  # missing, a symlink loop, unreadable
        return None


def servable_path(uri: str, settings: Settings, session: Session) -> Path | None:
    """The real path to serve for a catalog URI, or None when it must not be served: not a
    local path, missing, not a regular file, outside the media roots in force or part of the
    engine's state. The caller serves the returned path itself, never the URI (a symlink
    swapped in later cannot redirect it). The video's status is the caller's to check
    (:data:`SERVABLE_STATUSES`)."""
    path = local_path(uri)
    if path is None or not path.is_absolute():
        return None
    real = real_path(path)
    if real is None:
        return None
    try:
        if not stat.S_ISREG(real.stat().st_mode):
            return None
    except OSError:
        return None
    if is_reserved(real, settings) or not under_allowed_root(real, settings, session):
        return None
    return real


def placement_problem(
    path: Path,
    *,
    settings: Settings,
    roots: Iterable[Path],
    scanned: Path | None = None,
) -> str | None:
    """Why ingest must refuse the file at ``path`` (None: it may register it).

    ``roots`` are the media roots for this file (``RECSYS_MEDIA_ROOTS``, or its own source and
    the recorded roots); ``scanned`` is the folder it was found in by a directory scan, which a
    symlink may not leave. A missing file is not refused here (the probe reports it).
    """
    real = real_path(path)
    if real is None:
        return None
    if scanned is not None and not is_under(real, [scanned]):
        return (
            "is a symlink to a file outside the scanned folder; refused (copy the file into "
            "the folder, or ingest the folder it is in)"
        )
    if is_reserved(real, settings):
        return (
            "is part of the engine's own state under RECSYS_HOME (its database, features, "
            "models, indexes...); refused"
        )
    if not is_under(real, roots):
        if settings.resolved_media_roots:
            return (
                "is outside the media roots (RECSYS_MEDIA_ROOTS); refused: add its folder "
                "to the list"
            )
        return (
            "is outside the media roots (the folders this ingest and earlier ones read); "
            "refused: move it under the manifest's folder, or list every media folder in "
            "RECSYS_MEDIA_ROOTS"
        )
    return None
