"""Known pretrained weights: local name → upstream URL, checksum, size, licence, encoder.

Each entry names the file it is stored as under ``$RECSYS_HOME/weights`` and the stage-A encoder
component that reads it. ``sha256`` is the full checksum when it is recorded here; otherwise
``sha256_prefix`` is the hash prefix the publisher put in the file name (the torch.hub
convention, checked the same way torch.hub checks it). An entry with neither can only be used
after a person vouches for the file (``recsys weights verify NAME --trust-unverified``).

The torchvision entries are read from torchvision's own weight enums (URL, size), so they follow
the installed torchvision release.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from recsys.errors import NotFoundError

#: Image and video models offered as ``torchvision:<model>`` / ``torchvision-video:<model>``.
TORCHVISION_IMAGE_MODELS = (
    "resnet18",
    "resnet34",
    "resnet50",
    "mobilenet_v3_small",
    "efficientnet_b0",
    "convnext_tiny",
    "vit_b_16",
)
TORCHVISION_VIDEO_MODELS = ("r2plus1d_18", "s3d", "mvit_v2_s", "swin3d_t")


@dataclass(frozen=True)
class WeightsEntry:
    """One downloadable weights file."""

    name: str  # the registry name (also the local file's stem)
    encoder: str  # the stage-A component that reads it, e.g. "audio=vggish"
    url: str
    filename: str  # local file name under $RECSYS_HOME/weights (also the mirror's)
    licence: str
    sha256: str | None = None
    sha256_prefix: str | None = None  # from the upstream file name (torch.hub convention)
    size: int | None = None  # bytes, when known exactly
    approx_mb: float | None = None  # megabytes, when only that is published
    note: str = ""

    @property
    def verifiable(self) -> bool:
        return bool(self.sha256 or self.sha256_prefix)


def _prefix_of(url: str) -> str | None:
    match = re.search(r"-([a-f0-9]{6,})\.[a-z]+$", url)
    return match.group(1) if match else None


_STATIC = (
    WeightsEntry(
        name="vggish",
        encoder="audio=vggish",
        url="https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth",
        filename="vggish.pth",
        licence="Apache-2.0 (AudioSet VGGish, tensorflow/models; PyTorch port by harritaylor)",
        sha256_prefix="10086976",
        approx_mb=277.0,
    ),
    WeightsEntry(
        name="vggish-pca",
        encoder="audio=vggish,pca",
        url="https://storage.googleapis.com/audioset/vggish_pca_params.npz",
        filename="vggish-pca.npz",
        licence="Apache-2.0 (AudioSet VGGish, tensorflow/models)",
        approx_mb=0.07,
        note="PCA/whitening + 8-bit quantisation of the released AudioSet embeddings",
    ),
    WeightsEntry(
        name="panns-cnn14",
        encoder="audio=panns:cnn14",
        url="https://zenodo.org/record/3987831/files/Cnn14_mAP%3D0.431.pth",
        filename="panns-cnn14.pth",
        licence="CC-BY-4.0 (PANNs, Kong et al.; code MIT)",
        approx_mb=327.0,
    ),
    WeightsEntry(
        name="open_clip-ViT-B-32",
        encoder="visual=open_clip:ViT-B-32",
        url="https://huggingface.co/laion/CLIP-ViT-B-32-laion2B-s34B-b79K/resolve/main/"
        "open_clip_model.safetensors",
        filename="open_clip-ViT-B-32.safetensors",
        licence="MIT (LAION-2B trained OpenCLIP)",
        approx_mb=605.0,
    ),
    WeightsEntry(
        name="open_clip-ViT-B-16-SigLIP",
        encoder="visual=open_clip:ViT-B-16-SigLIP",
        url="https://huggingface.co/timm/ViT-B-16-SigLIP/resolve/main/open_clip_model.safetensors",
        filename="open_clip-ViT-B-16-SigLIP.safetensors",
        licence="Apache-2.0 (SigLIP, WebLI)",
        approx_mb=813.0,
    ),
)


def _torchvision_entries() -> list[WeightsEntry]:
    try:
        import torchvision
    except ImportError:  # pragma: no cover - the `pretrained` extra
        return []
    entries = []
    kinds = (
        ("torchvision", TORCHVISION_IMAGE_MODELS),
        ("torchvision-video", TORCHVISION_VIDEO_MODELS),
    )
    for kind, models in kinds:
        for model in models:
            try:
                weights = torchvision.models.get_model_weights(model).DEFAULT
            except (ValueError, AttributeError):  # not in this torchvision release
                continue
            meta = weights.meta
            name = model if kind == "torchvision" else f"{kind}-{model}"
            licence = (
                "BSD-3-Clause code; ImageNet-1k weights (research use, see torchvision docs)"
                if kind == "torchvision"
                else "BSD-3-Clause code; Kinetics-400 weights (see torchvision docs)"
            )
            entries.append(
                WeightsEntry(
                    name=name,
                    encoder=f"visual={kind}:{model}",
                    url=weights.url,
                    filename=f"{name}.pth",
                    licence=licence,
                    sha256_prefix=_prefix_of(weights.url),
                    approx_mb=meta.get("_file_size"),
                    note=f"torchvision {weights}",
                )
            )
    return entries


@cache
def _all() -> dict[str, WeightsEntry]:
    return {entry.name: entry for entry in (*_STATIC, *_torchvision_entries())}


def register_weights(entry: WeightsEntry) -> None:
    """Add (or replace) an entry for this process: company-internal weights, tests."""
    _all()[entry.name] = entry


def known_weights() -> list[WeightsEntry]:
    """Every registered entry, by name."""
    return sorted(_all().values(), key=lambda entry: entry.name)


def find_entry(name: str) -> WeightsEntry | None:
    return _all().get(name)


def get_entry(name: str) -> WeightsEntry:
    entry = find_entry(name)
    if entry is None:
        raise NotFoundError(
            f"no weights named {name!r}; `recsys weights list` shows the known names"
        )
    return entry
