"""`recsys weights`: fetch from a file:// mirror the test writes, checksums, trust, paths."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestration.cli.main import app
from recsys.settings import load_settings
from recsys.weights import (
    UnverifiedWeights,
    WeightsEntry,
    WeightsError,
    fetch,
    register_weights,
    verify,
    weights_path,
)

PAYLOAD = b"not really a network, but bytes with a checksum" * 1000


@pytest.fixture
def mirror(tmp_path: Path) -> Path:
    folder = tmp_path / "mirror"
    folder.mkdir()
    (folder / "tiny.pth").write_bytes(PAYLOAD)
    register_weights(
        WeightsEntry(
            name="tiny",
            encoder="visual=test",
            url="https://example.invalid/tiny-0000.pth",
            filename="tiny.pth",
            licence="test",
            sha256=hashlib.sha256(PAYLOAD).hexdigest(),
            size=len(PAYLOAD),
        )
    )
    register_weights(
        WeightsEntry(
            name="nosum",
            encoder="visual=test",
            url="https://example.invalid/nosum.pth",
            filename="tiny.pth",
            licence="test",
        )
    )
    return folder


def test_fetch_from_a_file_mirror_verifies_and_is_idempotent(tmp_path, mirror, monkeypatch) -> None:
    settings = load_settings(tmp_path / "home")
    monkeypatch.setenv("RECSYS_WEIGHTS_MIRROR", mirror.as_uri())
    seen: list[int] = []
    report = fetch(settings, "tiny", progress=lambda done, total: seen.append(done))
    assert report.status == "verified" and seen[-1] == len(PAYLOAD)
    assert weights_path(settings, "tiny").read_bytes() == PAYLOAD
    (mirror / "tiny.pth").unlink()  # a verified copy is not downloaded again
    assert fetch(settings, "tiny").status == "verified"


def test_checksum_mismatch_truncated_and_missing_files_are_refused(tmp_path, mirror) -> None:
    settings = load_settings(tmp_path / "home")
    (mirror / "tiny.pth").write_bytes(PAYLOAD[:-1] + b"!")
    with pytest.raises(WeightsError, match="sha256"):
        fetch(settings, "tiny", mirror=mirror.as_uri())
    (mirror / "tiny.pth").write_bytes(PAYLOAD[: len(PAYLOAD) // 2])
    with pytest.raises(WeightsError, match="truncated"):
        fetch(settings, "tiny", mirror=mirror.as_uri())
    (mirror / "tiny.pth").unlink()
    with pytest.raises(WeightsError, match="tiny.pth"):
        fetch(settings, "tiny", mirror=mirror.as_uri())
    assert not weights_path(settings, "tiny").exists()
    assert not list(settings.weights_dir.glob(".*part"))  # no partial file left behind


def test_hand_placed_files_are_used_when_they_verify_or_when_trusted(tmp_path, mirror) -> None:
    settings = load_settings(tmp_path / "home")
    settings.weights_dir.mkdir(parents=True)
    (settings.weights_dir / "tiny.pth").write_bytes(PAYLOAD)
    assert verify(settings, "tiny").status == "verified"
    (settings.weights_dir / "tiny.pth").write_bytes(b"other bytes")
    assert verify(settings, "tiny").status == "mismatch"
    assert verify(settings, "tiny", trust_unverified=True).status == "trusted"
    assert verify(settings, "tiny").status == "trusted"  # remembered with its sha256
    (settings.weights_dir / "tiny.pth").write_bytes(b"replaced again")
    assert verify(settings, "tiny").status == "mismatch"  # trust was for the other bytes


def test_an_entry_without_checksum_needs_trust_unverified(tmp_path, mirror) -> None:
    settings = load_settings(tmp_path / "home")
    register_weights(  # fetched from its upstream: a mirror needs a full sha256
        WeightsEntry(
            name="nosum-upstream",
            encoder="visual=test",
            url=(mirror / "tiny.pth").as_uri(),
            filename="nosum.pth",
            licence="test",
        )
    )
    with pytest.raises(UnverifiedWeights, match="--trust-unverified"):
        fetch(settings, "nosum-upstream")
    assert fetch(settings, "nosum-upstream", trust_unverified=True).usable


def test_cli_list_fetch_verify_path(tmp_path, mirror, monkeypatch) -> None:
    runner = CliRunner()
    home = str(tmp_path / "home")
    monkeypatch.setenv("RECSYS_WEIGHTS_MIRROR", mirror.as_uri())
    listed = runner.invoke(app, ["weights", "list", "--home", home, "--json"])
    assert (
        listed.exit_code == 0 and '"vggish"' in listed.output and '"panns-cnn14"' in listed.output
    )
    missing = runner.invoke(app, ["weights", "path", "tiny", "--home", home])
    assert missing.exit_code == 1 and "fetch tiny" in missing.output
    assert runner.invoke(app, ["weights", "fetch", "tiny", "--home", home]).exit_code == 0
    path = runner.invoke(app, ["weights", "path", "tiny", "--home", home])
    assert path.exit_code == 0 and path.output.strip().endswith("tiny.pth")
    assert runner.invoke(app, ["weights", "verify", "tiny", "--home", home]).exit_code == 0
    unknown = runner.invoke(app, ["weights", "fetch", "nope", "--home", home])
    assert unknown.exit_code == 1 and "weights list" in unknown.output


def _prefix_collision(prefix: str) -> bytes:
    """Bytes (not PAYLOAD) whose sha256 starts with ``prefix``: what a hostile mirror crafts."""
    for i in range(1_000_000):
        hostile = b"hostile %d" % i
        if hashlib.sha256(hostile).hexdigest().startswith(prefix):
            return hostile
    raise AssertionError("no collision found")


def _upstream_prefix_entry(tmp_path: Path, name: str, prefix_digits: int) -> str:
    """Register ``name`` upstream at a ``file://`` URL holding PAYLOAD, checked by a prefix of
    its sha256 (torch.hub style); returns PAYLOAD's full sha256."""
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    upstream = tmp_path / "upstream"
    upstream.mkdir(exist_ok=True)
    (upstream / f"{name}-fix.pth").write_bytes(PAYLOAD)
    register_weights(
        WeightsEntry(
            name=name,
            encoder="visual=test",
            url=(upstream / f"{name}-fix.pth").as_uri(),
            filename=f"{name}.pth",
            licence="test",
            sha256_prefix=digest[:prefix_digits],
            approx_mb=0.05,
        )
    )
    return digest


def test_a_prefix_only_entry_comes_from_upstream_until_its_full_sha256_is_pinned(
    tmp_path, mirror
) -> None:
    # A short prefix stands in for the registry's 8 hex digits: both can be matched by a mirror.
    digest = _upstream_prefix_entry(tmp_path, "pre", 3)
    (mirror / "pre.pth").write_bytes(_prefix_collision(digest[:3]))
    settings = load_settings(tmp_path / "home")
    report = fetch(settings, "pre", mirror=mirror.as_uri())
    assert report.sha256 == digest  # the mirror was not asked: upstream's bytes
    runner = CliRunner()
    home = ["--home", str(tmp_path / "home")]
    assert runner.invoke(app, ["weights", "pin", "pre", "ab" * 32, *home]).exit_code == 1
    pinned = runner.invoke(app, ["weights", "pin", "pre", digest, *home])
    assert pinned.exit_code == 0, pinned.output
    listed = json.loads(runner.invoke(app, ["weights", "list", "--json", *home]).output)
    assert {row["name"]: row["checksum"] for row in listed}["pre"] == "pinned"
    with pytest.raises(WeightsError, match="sha256"):  # now the mirror is asked, and refused
        fetch(settings, "pre", mirror=mirror.as_uri(), force=True)
    (mirror / "pre.pth").write_bytes(PAYLOAD)
    assert fetch(settings, "pre", mirror=mirror.as_uri(), force=True).usable


def test_a_mirror_needs_a_full_sha256_for_an_entry_without_one(tmp_path, mirror) -> None:
    settings = load_settings(tmp_path / "home")
    with pytest.raises(WeightsError, match="weights pin nosum"):
        fetch(settings, "nosum", mirror=mirror.as_uri(), trust_unverified=True)
    result = CliRunner().invoke(
        app,
        ["weights", "pin", "nosum", hashlib.sha256(PAYLOAD).hexdigest()]
        + ["--home", str(tmp_path / "home")],
    )
    assert result.exit_code == 0, result.output
    assert fetch(settings, "nosum", mirror=mirror.as_uri()).usable


def test_a_download_stops_at_the_registered_size(tmp_path, mirror) -> None:
    settings = load_settings(tmp_path / "home")
    (mirror / "tiny.pth").write_bytes(PAYLOAD + b"\0" * (8 << 20))  # a body that goes on
    seen: list[int] = []
    with pytest.raises(WeightsError, match="more than"):
        fetch(settings, "tiny", mirror=mirror.as_uri(), progress=lambda d, t: seen.append(d))
    assert max(seen) <= len(PAYLOAD) + 1
    assert not list(settings.weights_dir.glob(".*part"))


def test_partial_files_of_a_killed_fetch_are_swept(tmp_path, mirror) -> None:
    settings = load_settings(tmp_path / "home")
    settings.weights_dir.mkdir(parents=True)
    stale = settings.weights_dir / ".tiny.pth.0123abcd.part"
    stale.write_bytes(b"half a file")
    (mirror / "tiny.pth").unlink()
    with pytest.raises(WeightsError):
        fetch(settings, "tiny", mirror=mirror.as_uri())
    assert not stale.exists()


def test_the_loader_opens_only_the_registered_file_name(tmp_path) -> None:
    from recsys.features.audio_encoders import VggishEncoder
    from recsys.features.base import ExtractorUnavailable

    settings = load_settings(tmp_path / "home")
    settings.weights_dir.mkdir(parents=True)
    (settings.weights_dir / "vggish.safetensors").write_bytes(b"not the registered file")
    with pytest.raises(ExtractorUnavailable, match=r"vggish\.pth"):
        VggishEncoder(settings)
    assert verify(settings, "vggish").status == "missing"


def test_trust_records_wait_for_the_trusted_file_lock(tmp_path, mirror) -> None:
    import threading

    from recsys.file_lock import exclusive

    settings = load_settings(tmp_path / "home")
    settings.weights_dir.mkdir(parents=True)
    (settings.weights_dir / "tiny.pth").write_bytes(b"other bytes")
    done = threading.Event()

    def trust() -> None:
        verify(settings, "tiny", trust_unverified=True)
        done.set()

    with exclusive(settings.weights_dir / ".TRUSTED.json.lock"):
        worker = threading.Thread(target=trust)
        worker.start()
        assert not done.wait(0.5)  # the read-modify-write waits for the holder
    worker.join(10)
    assert done.is_set() and verify(settings, "tiny").status == "trusted"


def test_the_weights_digest_follows_a_rewrite_that_keeps_size_and_mtime(tmp_path) -> None:
    import os

    from recsys.features.encoder import weights_sha256

    path = tmp_path / "w.pth"
    path.write_bytes(b"first bytes")
    before = path.stat()
    assert weights_sha256(path) == hashlib.sha256(b"first bytes").hexdigest()
    path.write_bytes(b"other bytes")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert weights_sha256(path) == hashlib.sha256(b"other bytes").hexdigest()


def test_a_vouched_for_file_does_not_block_the_publishers_file(tmp_path) -> None:
    _upstream_prefix_entry(tmp_path, "own", 8)
    settings = load_settings(tmp_path / "home")
    settings.weights_dir.mkdir(parents=True)
    (settings.weights_dir / "own.pth").write_bytes(b"my own fine-tune")
    assert verify(settings, "own", trust_unverified=True).status == "trusted"
    assert fetch(settings, "own", force=True).status == "verified"
