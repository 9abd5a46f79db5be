"""Finding the videos to register: files, directories (recursively) and manifest CSVs."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from recsys.db.models import MediaRootKind
from recsys.ids import unroutable_reason
from recsys.ingest.csv_files import UnreadableCsv, has_surrogates, open_csv
from recsys.ingest.report import FAILED, IngestItem, IngestReport

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


@dataclass
class Candidate:
    """One video to register, as found on the command line, in a directory or a manifest."""

    source: str  # where it came from, for messages: a path or "manifest.csv row 7"
    video_id: str
    path: Path | None  # None when the URI is not a local file
    uri: str
    title: str | None = None
    category: str | None = None
    channel: str | None = None  # the uploader (caps and filters in result lists use it)
    tags: list[str] | None = None
    problem: str | None = None  # known failure before probing (e.g. remote URI)
    # The media root this input vouches for (a real path): the scanned folder, the manifest's
    # folder or the file named on the command line (see recsys.media_roots).
    root: Path | None = None
    root_kind: MediaRootKind | None = None
    id_given: bool = False  # a manifest's video_id column named it (else it is derived)


def _split_tags(value: str | None) -> list[str] | None:
    if value is None or not value.strip():
        return None
    for separator in TAG_SEPARATORS:
        if separator in value:
            return [t.strip() for t in value.split(separator) if t.strip()]
    return [value.strip()]


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


def _manifest_row(
    values: dict[str, str], where: tuple[Path, int], location: str, seen: dict[str, int]
) -> Candidate | IngestItem | None:
    """Row ``where`` (manifest, row number): a candidate, its failure, or None when blank.

    ``seen`` maps the video ids of earlier rows to their row numbers (this row's is added).
    """
    path, row_number = where
    source = f"{path} row {row_number}"
    nul = [k for k, v in values.items() if "\x00" in v]
    if nul:
        return IngestItem(source, None, FAILED, f"row has a NUL byte (column {nul[0]!r})")
    bad = [k for k, v in values.items() if has_surrogates(v)]
    if bad:
        return IngestItem(
            source,
            None,
            FAILED,
            f"row is not valid UTF-8 text (column {bad[0]!r}); fix the encoding",
        )
    if not any(values.values()):
        return None  # blank line
    location_value = values.get(location, "")
    if not location_value:
        return IngestItem(
            source, values.get("video_id") or None, FAILED, f"empty {location!r} value"
        )
    local, uri, problem = _resolve_uri(location_value, path.parent.resolve())
    given = values.get("video_id") or ""
    video_id = given or Path(urlparse(location_value).path).stem  # derived ids: see discover
    if not video_id:
        return IngestItem(source, None, FAILED, "cannot derive a video_id from the row")
    if given and given in seen:
        return IngestItem(
            source,
            given,
            FAILED,
            f"duplicate video_id {given!r} (first in row {seen[given]}); row ignored",
        )
    if given:
        seen[given] = row_number
    tags = _split_tags(values.get("tags"))
    if tags is None and values.get("label"):
        tags = [values["label"]]
    return Candidate(
        source=source,
        video_id=video_id,
        path=local,
        uri=uri,
        title=values.get("title") or values.get("label") or None,
        category=values.get("category") or None,
        channel=values.get("channel") or None,
        tags=tags,
        problem=problem,
        root=path.parent.resolve(),
        root_kind=MediaRootKind.MANIFEST,
        id_given=bool(given),
    )


def read_manifest(path: Path, report: IngestReport) -> list[Candidate]:
    """Candidates of a manifest CSV; bad rows and a bad header go to ``report``."""
    try:
        reader, header = open_csv(path)
    except UnreadableCsv as error:
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
    candidates: list[Candidate] = []
    seen: dict[str, int] = {}
    row_number = 1
    try:
        for row in reader:
            row_number = reader.line_num
            values = {k: (v or "").strip() for k, v in row.items() if isinstance(k, str)}
            found = _manifest_row(values, (path, row_number), location, seen)
            if isinstance(found, Candidate):
                candidates.append(found)
            elif found is not None:
                report.items.append(found)
    except csv.Error as error:
        report.items.append(
            IngestItem(f"{path} row {row_number}", None, FAILED, f"CSV syntax error: {error}")
        )
    return candidates


def _derive_ids(candidates: list[Candidate], roots: list[Path], configured: bool) -> None:
    folders = [root for root in roots if root.is_dir()]
    if not configured:  # this run's folders count too
        inputs = {MediaRootKind.DIRECTORY, MediaRootKind.MANIFEST}
        folders += [c.root for c in candidates if c.root is not None and c.root_kind in inputs]
    folders = sorted(set(folders))
    for candidate in candidates:
        if not candidate.id_given and candidate.path is not None:
            candidate.video_id = derived_id(candidate.path, folders)


def _id_fix(candidate: Candidate) -> str:
    if candidate.root_kind == MediaRootKind.MANIFEST:
        return "give the row a video_id the API can serve"
    return "rename the file (or list it in a manifest with a video_id)"


def is_hidden(relative: Path) -> bool:
    """A hidden file, or a file in a hidden folder (``.git``, ``.Trash``, ``._name`` resource
    forks): never a video of the catalog."""
    return any(part.startswith(".") for part in relative.parts)


def derived_id(path: Path, folders: Sequence[Path]) -> str:
    """The id of a file no manifest named: its path under the innermost of ``folders`` holding
    it, without the extension (``clips/9e77``), else its name without the extension."""
    holding = [f for f in folders if path.is_relative_to(f)]
    if not holding:
        return path.stem
    innermost = max(holding, key=lambda folder: len(folder.parts))
    return path.relative_to(innermost).with_suffix("").as_posix()


def discover(
    paths: Iterable[str | Path],
    report: IngestReport,
    roots: Iterable[Path] = (),
    *,
    configured: bool = False,
) -> list[Candidate]:
    """Expand command-line paths into candidates (directories recursively, hidden files
    skipped, manifests read).

    A file without a manifest ``video_id`` gets :func:`derived_id` over the folders it may lie
    in: ``roots`` (the media roots in force: ``configured`` ones, or those earlier ingests
    recorded) plus, unless they are configured, this run's scanned and manifest folders. Found
    through a folder, a manifest or by name, a file gets the same id.
    """
    candidates: list[Candidate] = []
    for given in paths:
        if "\x00" in str(given):
            report.items.append(IngestItem(repr(str(given)), None, FAILED, "path has a NUL byte"))
            continue
        path = Path(given).expanduser()
        if path.is_dir():
            root = path.resolve()
            for found in sorted(root.rglob("*")):
                if is_hidden(found.relative_to(root)):
                    continue
                if found.is_file() and found.suffix.lower() in VIDEO_EXTENSIONS:
                    video_id = found.relative_to(root).with_suffix("").as_posix()
                    candidates.append(
                        Candidate(
                            str(found),
                            video_id,
                            found,
                            str(found),
                            root=root,
                            root_kind=MediaRootKind.DIRECTORY,
                        )
                    )
        elif path.suffix.lower() in MANIFEST_EXTENSIONS:
            if not path.exists():
                report.items.append(IngestItem(str(path), None, FAILED, "manifest not found"))
                continue
            candidates.extend(read_manifest(path, report))
        else:
            resolved = path.resolve()
            candidates.append(
                Candidate(
                    str(path),
                    path.stem,
                    resolved,
                    str(resolved),
                    root=resolved,
                    root_kind=MediaRootKind.FILE,
                )
            )
    _derive_ids(candidates, list(roots), configured)
    # One video_id per batch: the first occurrence wins, later ones are reported.
    unique: dict[str, Candidate] = {}
    for candidate in candidates:
        unroutable = unroutable_reason(candidate.video_id)
        if unroutable is not None:
            report.items.append(
                IngestItem(
                    candidate.source,
                    None,  # not an id anything could name it by
                    FAILED,
                    f"video id {candidate.video_id!r} {unroutable}, so the API could never "
                    f"serve it; {_id_fix(candidate)}",
                )
            )
            continue
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
