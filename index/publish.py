"""Writing a version directory, switching the served version atomically, and housekeeping.

A version directory is assembled under a hidden temporary name and renamed into place, so
``indexes/<version>/`` is either complete or absent. Activation first loads and verifies the
candidate (checksum, dimension, model version against the database), and only then replaces
``CURRENT``; any refusal leaves the previous index serving. The last ``settings.index_keep``
builds stay on disk for rollback.

``CURRENT`` is the one truth about which version is served; the ``index_builds`` rows
(status, ``is_active``) are bookkeeping derived from the builds and from the pointer.

Writing a version, activating one and deleting old ones each hold the publish lock
(:func:`recsys.index_pointer.publish_lock`, an ``flock`` in ``indexes/``), so concurrent builds
and activations take turns and clean-up never deletes what another process is about to serve.
Every file is fsynced before its rename and every directory after (:mod:`recsys.durable`).
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from index.cowatch import COWATCH_FILE
from index.errors import (
    IndexActivationError,
    IndexBuildError,
    IndexLoadError,
    IndexNotFoundError,
    InvalidIndexVersion,
    NoActiveIndex,
    UnknownIndexVersion,
)
from index.ids import ivf_locations
from index.load import LoadedIndex, load_index
from index.manifest import (
    EXCLUDED_FILE,
    FORMAT_VERSION,
    ID_MAP_FILE,
    INDEX_FILE,
    METRIC,
    IndexManifest,
    read_manifest,
    write_manifest,
)
from index.pointer import current_version, set_current, version_dir
from recsys.checksums import sha256_file
from recsys.db import Database
from recsys.db.models import IndexBuild, ModelVersion
from recsys.durable import ensure_dir, fsync_dir, fsync_file, write_synced
from recsys.events.hybrid import NeighbourLists
from recsys.index_pointer import publish_lock
from recsys.settings import Settings

log = logging.getLogger(__name__)
STALE_TMP_S = 3600.0  # unfinished build directories older than this are debris
#: The status of a build kept aside because the served index had newer embeddings.
SUPERSEDED = "superseded"


def write_version(
    settings: Settings,
    index: faiss.Index,
    draft: IndexManifest,
    *,
    excluded: np.ndarray | None = None,
    cowatch: NeighbourLists | None = None,
) -> tuple[Path, IndexManifest]:
    """Save ``index`` and its manifest as a new, complete ``indexes/<draft.version>/``, with
    the co-watch neighbour lists when given (:mod:`index.cowatch`).

    The manifest written is ``draft`` with the file facts filled in (count, dimension, sizes,
    checksums, format, creation time).
    """
    version = draft.version
    with publish_lock(settings):
        root = ensure_dir(settings.indexes_dir)
        final = version_dir(settings, version)
        if final.exists():
            raise IndexBuildError(f"index version {version} already exists at {final}")
        # A unique name: two writers never share (or delete) each other's half-written build.
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{version}.", suffix=".tmp"))
        try:
            tmp.chmod(0o755)  # mkdtemp makes it private; readers (API workers) need to list it
            manifest = _write_files(tmp, index, draft, excluded, cowatch)
            fsync_dir(tmp)  # its entries are on disk before the rename makes them visible
            os.replace(tmp, final)
            fsync_dir(root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final, manifest


def _write_files(
    directory: Path,
    index: faiss.Index,
    draft: IndexManifest,
    excluded: np.ndarray | None,
    cowatch: NeighbourLists | None = None,
) -> IndexManifest:
    """The index file, the optional exclusion list and co-watch lists, and the manifest,
    each fsynced."""
    index_path = directory / INDEX_FILE
    faiss.write_index(index, str(index_path))
    fsync_file(index_path)
    excluded_sha256, excluded_count = None, 0
    if excluded is not None and excluded.size:
        excluded_path = directory / EXCLUDED_FILE
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(excluded, dtype=np.int64))
        write_synced(excluded_path, buffer.getvalue())
        excluded_sha256, excluded_count = sha256_file(excluded_path), int(excluded.size)
    id_map_sha256 = None
    places = ivf_locations(index)
    if places is not None:
        id_map_path = directory / ID_MAP_FILE
        buffer = io.BytesIO()
        np.save(buffer, places)
        write_synced(id_map_path, buffer.getvalue())
        id_map_sha256 = sha256_file(id_map_path)
    cowatch_sha256 = None
    if cowatch is not None and len(cowatch):
        cowatch_path = directory / COWATCH_FILE
        write_synced(cowatch_path, cowatch.to_bytes())
        cowatch_sha256 = sha256_file(cowatch_path)
    manifest = replace(
        draft,
        format=FORMAT_VERSION,
        metric=METRIC,
        normalized=True,
        count=int(index.ntotal),
        dim=int(index.d),
        index_file=INDEX_FILE,
        file_bytes=index_path.stat().st_size,
        sha256=sha256_file(index_path),
        faiss_version=faiss.__version__,
        created_at=datetime.now(UTC).isoformat(),
        excluded_sha256=excluded_sha256,
        excluded_count=excluded_count,
        id_map_sha256=id_map_sha256,
        cowatch_sha256=cowatch_sha256,
        cowatch_videos=len(cowatch) if cowatch is not None and cowatch_sha256 else 0,
        cowatch_pairs=cowatch.pairs if cowatch is not None and cowatch_sha256 else 0,
    )
    write_manifest(directory, manifest)
    return manifest


def _fill_row(row: IndexBuild, manifest: IndexManifest, directory: Path | None) -> None:
    row.model_version = manifest.model_version
    row.factory = manifest.factory
    row.count = manifest.count
    row.dim = manifest.dim
    row.path = str(directory) if directory is not None else ""
    # The column is recall at 10 neighbours; a gate at another k has no value for it.
    row.recall_at_10 = manifest.recall_at_k if manifest.k == 10 else None
    row.search_params = dict(manifest.search_params)
    row.build_seconds = manifest.build_seconds


def record_build(
    database: Database,
    manifest: IndexManifest,
    directory: Path | None,
    *,
    status: str,
    reason: str | None = None,
) -> None:
    """Insert or update the ``index_builds`` row of one version (never touches is_active)."""
    with database.session() as session:
        row = session.get(IndexBuild, manifest.version)
        if row is None:
            row = IndexBuild(version=manifest.version, is_active=False)
            session.add(row)
        _fill_row(row, manifest, directory)
        row.status = status
        row.status_reason = reason


def _refuse(
    version: str, problem: str, settings: Settings, *, missing: bool = False
) -> IndexActivationError:
    active = current_version(settings)
    keeps = f"index {active} stays active" if active else "no index is active"
    message = f"cannot activate index {version}: {problem}; {keeps}"
    if missing:
        return UnknownIndexVersion(f"{message} (see `recsys index list`)")
    return IndexActivationError(message)


def _mark_active(session: Session, version: str) -> None:
    """Make ``is_active`` mirror the pointer: true for ``version`` only."""
    for other in session.scalars(select(IndexBuild).where(IndexBuild.is_active.is_(True))):
        if other.version != version:
            other.is_active = False
    session.flush()


def _check_against_database(
    session: Session, settings: Settings, loaded: LoadedIndex, *, force: bool = False
) -> IndexBuild | None:
    """The recorded build of ``loaded`` (if any), after checking both agree with the DB."""
    version, manifest = loaded.version, loaded.manifest
    model = session.get(ModelVersion, manifest.model_version)
    if model is None:
        problem = f"its model version {manifest.model_version} is not registered"
        raise _refuse(version, problem, settings)
    if int(model.dim) != loaded.dim:
        raise _refuse(
            version,
            f"model {model.version} has dimension {model.dim} but the index has {loaded.dim}",
            settings,
        )
    row = session.get(IndexBuild, version)
    if row is not None:
        if row.model_version != loaded.model_version or int(row.dim) != loaded.dim:
            raise _refuse(
                version,
                f"its manifest (model {loaded.model_version}, dim {loaded.dim}) disagrees "
                f"with the recorded build (model {row.model_version}, dim {row.dim})",
                settings,
            )
        if row.status == "rejected":
            raise _refuse(version, f"the build was rejected: {row.status_reason}", settings)
        if row.status == SUPERSEDED and not force:
            raise _refuse(
                version,
                f"it was not published because {row.status_reason}; serve it anyway with "
                f"`recsys index activate {version} --force`",
                settings,
            )
    return row


def activate_index(
    settings: Settings, database: Database, version: str, *, force: bool = False
) -> LoadedIndex:
    """Verify ``version`` and make it the served index (rollback = activate an older one).

    An explicit activation may serve older embeddings than the current index (that is what a
    rollback is). A build that was kept aside as ``superseded`` (its publish found newer
    embeddings already served) is refused unless ``force``. Holds the publish lock throughout.
    """
    try:
        directory = version_dir(settings, version)
    except InvalidIndexVersion as error:
        raise _refuse(version, str(error), settings) from error
    with publish_lock(settings):
        try:
            # Mapped: verifying a 5 GB index must not read a second copy into the memory of
            # the build that has just written it.
            loaded = load_index(directory, mmap=True, verify=settings.index_verify)
        except IndexNotFoundError as error:
            raise _refuse(version, str(error), settings, missing=True) from error
        except IndexLoadError as error:
            raise _refuse(version, str(error), settings) from error
        previous = current_version(settings)
        with database.session() as session:
            row = _check_against_database(session, settings, loaded, force=force)
            _mark_active(session, version)
            if row is None:
                row = IndexBuild(version=version)
                session.add(row)
                _fill_row(row, loaded.manifest, directory)
            row.status = "published"
            row.status_reason = None
            row.is_active = True
            session.flush()
            # The pointer is the truth for readers; the commit of the bookkeeping follows.
            set_current(settings, version)
    if previous and previous != version:
        older = newer_served_embeddings(settings, loaded.manifest, served_version=previous)
        if older is not None:
            log.info("rolled back: index %s %s", version, older)
    log.info("index %s is now active (model %s)", version, loaded.model_version)
    return loaded


def _as_of(manifest: IndexManifest) -> datetime | None:
    """When the embeddings of ``manifest`` were read (its creation time for old manifests)."""
    text = manifest.embeddings_as_of or manifest.created_at
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def newer_served_embeddings(
    settings: Settings, candidate: IndexManifest, *, served_version: str | None = None
) -> str | None:
    """Why ``candidate`` holds older data than the served index, or None when it does not.

    Compares the embeddings' as-of times of the two manifests. An unreadable served index, or a
    manifest without a time, never blocks (there is nothing trustworthy to protect).
    """
    served_version = served_version or current_version(settings)
    if served_version is None or served_version == candidate.version:
        return None
    try:
        served = read_manifest(version_dir(settings, served_version))
    except (IndexLoadError, InvalidIndexVersion):
        return None
    mine, theirs = _as_of(candidate), _as_of(served)
    if mine is None or theirs is None or mine >= theirs:
        return None
    return (
        f"its embeddings (as of {mine.isoformat()}) are older than those of the served index "
        f"{served_version} (as of {theirs.isoformat()})"
    )


def cleanup_versions(settings: Settings, database: Database, keep: int | None = None) -> list[str]:
    """Delete all but the newest ``keep`` version directories (never the active one).

    Holds the publish lock, so the active version it spares is the one really served and no
    build another process is writing or activating disappears under it.
    """
    keep = settings.index_keep if keep is None else keep
    root = settings.indexes_dir
    if not root.is_dir():
        return []
    with publish_lock(settings):
        removed = _remove_old_versions(root, current_version(settings), keep)
        if removed:
            with database.session() as session:
                for version in removed:
                    row = session.get(IndexBuild, version)
                    if row is not None:
                        row.status = "removed"
                        row.status_reason = f"cleaned up: only the last {keep} builds are kept"
                        row.is_active = False
    return removed


def _remove_old_versions(root: Path, active: str | None, keep: int) -> list[str]:
    versions = sorted(
        (p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
        reverse=True,
    )
    kept = set(versions[: max(keep, 1)])
    if active:
        kept.add(active)
    removed = [v for v in versions if v not in kept]
    for version in removed:
        shutil.rmtree(root / version, ignore_errors=True)
    now = time.time()
    # debris of killed writers: build directories, pointer and manifest temp files
    for debris in root.glob(".*.tmp"):
        try:
            old = now - debris.stat().st_mtime > STALE_TMP_S
        except FileNotFoundError:
            continue
        if not old:
            continue
        if debris.is_dir():
            shutil.rmtree(debris, ignore_errors=True)
        else:
            debris.unlink(missing_ok=True)
    return removed


def list_indexes(settings: Settings, database: Database) -> list[dict[str, Any]]:
    """Every known build (database rows and directories on disk), newest first.

    ``active`` comes from the pointer; ``recall_at_k``/``k`` from the manifest when the
    directory is on disk (the database row only knows recall at 10).
    """
    active = current_version(settings)
    entries: dict[str, dict[str, Any]] = {}
    with database.session() as session:
        for row in session.scalars(select(IndexBuild)):
            entries[row.version] = {
                "version": row.version,
                "model_version": row.model_version,
                "factory": row.factory,
                "count": row.count,
                "dim": row.dim,
                "recall_at_k": row.recall_at_10,
                "k": 10 if row.recall_at_10 is not None else None,
                "search_params": row.search_params,
                "build_seconds": row.build_seconds,
                "status": row.status,
                "status_reason": row.status_reason,
                "created_at": row.created_at.isoformat() if row.created_at else None,
            }
    root = settings.indexes_dir
    if root.is_dir():
        for path in root.iterdir():
            if not path.is_dir() or path.name.startswith("."):
                continue
            entry = entries.setdefault(path.name, {"version": path.name, "status": "unrecorded"})
            try:
                manifest = read_manifest(path)
            except IndexLoadError as error:
                entry["problem"] = str(error)
                continue
            for key in ("model_version", "factory", "count", "dim", "created_at"):
                entry.setdefault(key, getattr(manifest, key))
            entry["recall_at_k"], entry["k"] = manifest.recall_at_k, manifest.k
    for version, entry in entries.items():
        entry["active"] = version == active
        entry["on_disk"] = (root / version).is_dir()
    return sorted(entries.values(), key=lambda e: e["version"], reverse=True)


def active_manifest(settings: Settings) -> IndexManifest | None:
    """The manifest of the version ``CURRENT`` names; None when nothing is published.

    Raises :class:`IndexLoadError` when the named directory or its manifest is unusable.
    """
    version = current_version(settings)
    if version is None:
        return None
    directory = version_dir(settings, version)
    if not directory.is_dir():
        raise IndexNotFoundError(
            f"CURRENT names index {version}, but {directory} does not exist; "
            "activate another version or rebuild"
        )
    return read_manifest(directory)


def index_info(
    settings: Settings, database: Database, version: str | None = None, *, verify: bool = True
) -> dict[str, Any]:
    """Manifest and database record of one version (default: the active one)."""
    active = current_version(settings)
    version = version or active
    if version is None:
        raise NoActiveIndex("no index is active; build one with `recsys index build`")
    directory = version_dir(settings, version)
    info: dict[str, Any] = {"version": version, "active": version == active}
    with database.session() as session:
        row = session.get(IndexBuild, version)
        if row is not None:
            info["status"] = row.status
            info["status_reason"] = row.status_reason
    if not directory.is_dir():
        if "status" not in info:
            raise IndexNotFoundError(
                f"index {version} is unknown (no directory {directory}); see `recsys index list`"
            )
        info["on_disk"] = False
        return info
    info["on_disk"] = True
    manifest = read_manifest(directory)
    info["manifest"] = manifest.to_json()
    if verify:
        path = directory / manifest.index_file
        info["checksum_ok"] = path.is_file() and sha256_file(path) == manifest.sha256
    return info
