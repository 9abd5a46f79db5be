"""Random-weight checkpoints written by the tests, in the files the encoders look for.

Reference packages (torchvggish, panns_inference, open_clip, torchvision) build the networks
with random weights and nothing is downloaded; each file is vouched for (``trust_unverified``)
because random weights cannot match the registry's checksums.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import torch

from recsys.settings import Settings
from recsys.weights import verify

#: A tiny OpenCLIP architecture (a 2-layer ViT) so tests stay fast.
TINY_CLIP = "test-tiny-ViT"
TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1},
}


def reference_vggish() -> torch.nn.Module:
    from torchvggish.torchvggish import _vgg

    torch.manual_seed(0)
    return _vgg(postprocess=False).eval()


def panns_models_offline() -> ModuleType:
    """``panns_inference.models``, imported without its import-time download: the package's
    ``config`` fetches AudioSet's label list into ``~/panns_data`` (with wget) when that file is
    missing. It is imported once with ``HOME`` pointing at a temporary folder that already holds
    a label list, so nothing is fetched and the user's home is left alone."""
    if "panns_inference" in sys.modules:
        return importlib.import_module("panns_inference.models")
    previous = os.environ.get("HOME")
    with tempfile.TemporaryDirectory() as home:
        labels = Path(home) / "panns_data" / "class_labels_indices.csv"
        labels.parent.mkdir()
        labels.write_text("index,mid,display_name\n0,/m/09x0r,Speech\n")
        os.environ["HOME"] = home
        try:
            return importlib.import_module("panns_inference.models")
        finally:
            if previous is None:
                os.environ.pop("HOME", None)
            else:
                os.environ["HOME"] = previous


def reference_cnn14() -> torch.nn.Module:
    Cnn14 = panns_models_offline().Cnn14

    torch.manual_seed(0)
    return Cnn14(
        sample_rate=32000,
        window_size=1024,
        hop_size=320,
        mel_bins=64,
        fmin=50,
        fmax=14000,
        classes_num=527,
    ).eval()


def reference_clip(settings: Settings) -> torch.nn.Module:
    import open_clip

    config = write_clip_config(settings)
    open_clip.add_model_config(config)
    torch.manual_seed(0)
    return open_clip.create_model(TINY_CLIP, pretrained=None).eval()


def write_clip_config(settings: Settings) -> Path:
    path = settings.weights_dir / "open_clip-configs" / f"{TINY_CLIP}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(TINY_CLIP_CONFIG))
    return path


def save(module: torch.nn.Module, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(path))
    else:
        torch.save(module.state_dict(), path)
    return path


def install(settings: Settings, name: str, module: torch.nn.Module, filename: str) -> Path:
    """Save ``module`` as registered weights ``name`` and vouch for the file."""
    path = save(module, settings.weights_dir / filename)
    verify(settings, name, trust_unverified=True)
    return path


def install_vggish(settings: Settings) -> torch.nn.Module:
    model = reference_vggish()
    install(settings, "vggish", model, "vggish.pth")
    return model


def install_cnn14(settings: Settings) -> torch.nn.Module:
    model = reference_cnn14()
    install(settings, "panns-cnn14", model, "panns-cnn14.pth")
    return model


def install_clip(settings: Settings) -> torch.nn.Module:
    model = reference_clip(settings)  # an unregistered name: no checksum to vouch for
    save(model, settings.weights_dir / f"open_clip-{TINY_CLIP}.safetensors")
    return model


def install_video(settings: Settings, model_name: str = "r2plus1d_18") -> torch.nn.Module:
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.get_model(model_name, weights=None).eval()
    name = f"torchvision-video-{model_name}"
    install(settings, name, model, f"{name}.pth")
    return model
