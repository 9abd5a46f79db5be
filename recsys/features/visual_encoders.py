"""Visual encoders: hand-made descriptors, torchvision image models, OpenCLIP, Kinetics clips.

* ``content``: the colour/texture/layout/motion descriptors of the ``content`` extractor.
* ``torchvision:<model>``: an ImageNet backbone fed what its weights were trained with
  (``weights.transforms()``: resize, centre crop 224, the weights' mean/std); frames are
  decoded at the resize size so the crop sees the same field of view.
* ``open_clip:<architecture>``: CLIP/SigLIP image embeddings (L2-normalised) via the
  ``open_clip`` package, built with random weights and loaded from a local checkpoint. A custom
  architecture's config JSON may sit in ``weights/open_clip-configs/<architecture>.json``.
* ``torchvision-video:<model>``: Kinetics-400 video models fed clips of consecutive frames
  around the sampled times (crop and mean/std of their weights), so motion is encoded.

Every network is built with ``weights=None``/``pretrained=None`` and loaded strictly from a
local file (:mod:`recsys.features.checkpoints`): nothing is ever downloaded.
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

from recsys.features.base import ExtractorUnavailable, FeatureError
from recsys.features.checkpoints import load_strict, read_state_dict
from recsys.features.content_visual import visual_descriptors
from recsys.features.encoder import Encoded, Encoder, resolve_weights, split_rows
from recsys.settings import Settings

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
    version = "cv-4"
    deep = False

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.size = settings.frame_size

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
        self.name = f"torchvision:{model}"
        torchvision = _need_torchvision(self.name)
        self.model_name = model
        self.weights_enum = _default_weights(torchvision, model, self.name)
        self.transform = self.weights_enum.transforms()
        self.size = int(self.transform.resize_size[0])
        self.weights_path, digest = resolve_weights(settings, self.name, model, model, weights_path)
        self.version = f"tv-{model}-2-{digest[:12]}"

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
        self.name = f"open_clip:{arch}"
        self.arch = arch
        self.config_file = settings.weights_dir / "open_clip-configs" / f"{arch}.json"
        model_config = _open_clip_config(arch, self.config_file, self.name)
        image_size = model_config["vision_cfg"].get("image_size", 224)
        self.size = int(image_size if isinstance(image_size, int) else min(image_size))
        self.dim = int(model_config["embed_dim"])
        stem = f"open_clip-{arch}"
        self.weights_path, digest = resolve_weights(settings, self.name, stem, stem, weights_path)
        self.version = f"oc-{arch}-1-{digest[:12]}"
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
        self.name = f"torchvision-video:{model}"
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
        self.version = f"tvv-{model}-1-t{self.clip_frames}-{digest[:12]}"

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
        import torch

        model = self.model()
        prepared: list[Any] = []
        out: list[Encoded | None] = []
        for clips in items:
            try:
                prepared.append(self.preprocess(clips))
                out.append(None)
            except FeatureError as error:
                out.append(error)
        if prepared:
            rows = self.run_chunks(model, torch.cat(prepared))
            blocks = iter(split_rows(rows, [p.shape[0] for p in prepared]))
            out = [next(blocks) if item is None else item for item in out]
        return [item for item in out if item is not None]
