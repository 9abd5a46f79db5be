"""Registering videos in the catalog (``videos``) and loading related pairs.

``ingest_paths`` takes files, directories (searched recursively by extension) and manifest CSVs
(column ``file`` or ``uri``, optional ``video_id,title,category,channel,tags``; relative paths are
relative to the manifest's folder). Each video is hashed, probed (in a killable worker process,
under ``settings.decode_timeout_s``), given a thumbnail of its middle frame and upserted:

* new video_id                        -> ``ready`` (or ``failed`` with the reason)
* same content hash as registered     -> no-op (``unchanged``); new manifest metadata is applied
* different content hash              -> new hash and probe fields, status ``stale``
* a failure                           -> status ``failed`` and ``status_reason``; the rest go on
* new video_id, content of a video    -> ``alias``: recorded in ``video_aliases`` (another path of
                                         that video), with a warning; ``allow_copies`` registers
                                         it as a video of its own

Failures that have no video to attach to (an unreadable manifest, a CSV row without a file, a
duplicate id inside one batch, a non-UTF-8 row) are reported in the ``IngestReport`` only.
Videos marked ``deleted`` are left deleted. Every video is committed on its own, so an
interrupted ingest keeps what it did and a re-run finishes the rest.

Video ids: a manifest's ``video_id`` column; otherwise the file's path under the innermost
folder it lies in among the media roots (configured, or recorded by earlier ingests, plus this
run's scanned and manifest folders), without the extension, else its name without the
extension: the same file gets the same id whether a folder scan, a manifest or the command line
found it. Hidden files and folders (``.name``) are skipped in folder scans. An id the API
could never serve (:func:`recsys.ids.unroutable_reason`: empty, too long, control characters,
``.``/``..`` or empty path segments) is refused with the reason and registers nothing.

Refused before a byte is read, with the reason (status ``failed``): anything but a regular file
(a FIFO, a device), a file outside the media roots (see :mod:`recsys.media_roots`: a manifest
row naming ``/etc/passwd``), a symlink in a scanned folder that points out of it, and the
engine's own state. The probe then refuses what the decoder must not read (see
:mod:`recsys.media.container`: containers outside the whitelist, frames above the pixel limit).
The input of every registered video (scanned folder, manifest folder, named file) is recorded as
a media root, which is what ``GET /media`` serves from when ``RECSYS_MEDIA_ROOTS`` is unset.

Modules: :mod:`~recsys.ingest.csv_files` (reading the CSV files), :mod:`~recsys.ingest.discovery`
(files, directories and manifests to candidates), :mod:`~recsys.ingest.videos` (hash, probe,
register), :mod:`~recsys.ingest.related` (related pairs) and :mod:`~recsys.ingest.report`.
"""

from recsys.ingest.csv_files import UnreadableCsv
from recsys.ingest.discovery import (
    MANIFEST_EXTENSIONS,
    TAG_SEPARATORS,
    VIDEO_EXTENSIONS,
    Candidate,
    discover,
    read_manifest,
)
from recsys.ingest.related import RelatedReport, load_related
from recsys.ingest.report import (
    ADDED,
    ALIAS,
    FAILED,
    SKIPPED,
    STALE,
    UNCHANGED,
    UPDATED,
    IngestItem,
    IngestReport,
    Outcome,
)
from recsys.ingest.videos import Inspection, ingest_paths

__all__ = [
    "ADDED",
    "ALIAS",
    "FAILED",
    "MANIFEST_EXTENSIONS",
    "SKIPPED",
    "STALE",
    "TAG_SEPARATORS",
    "UNCHANGED",
    "UPDATED",
    "VIDEO_EXTENSIONS",
    "Candidate",
    "IngestItem",
    "IngestReport",
    "Inspection",
    "Outcome",
    "RelatedReport",
    "UnreadableCsv",
    "discover",
    "ingest_paths",
    "load_related",
    "read_manifest",
]
