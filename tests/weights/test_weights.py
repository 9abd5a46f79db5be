"""`recsys weights`: fetch from a file:// mirror the test writes, checksums, trust, paths."""

from __future__ import annotations

import hashlib
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
    with pytest.raises(UnverifiedWeights, match="--trust-unverified"):
        fetch(settings, "nosum", mirror=mirror.as_uri())
    assert fetch(settings, "nosum", mirror=mirror.as_uri(), trust_unverified=True).usable


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
