"""``torchvision:<model>`` extractors: a pretrained image backbone from a LOCAL weights file.

The backbone is built with ``weights=None`` and its state dict is read with
``torch.load(..., weights_only=True)``; nothing is ever downloaded. The classifier head is
replaced by the identity, so each sampled frame becomes the backbone's pooled feature vector.
Audio uses the ``content`` audio descriptors. The version includes a hash of the weights file, so
different weights never share cache entries or models.
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from recsys.checksums import sha256_file
from recsys.features.base import ExtractorUnavailable, VideoFeatures
from recsys.features.content import audio_sequence

if TYPE_CHECKING:
    from recsys.media import DecodedVideo

PREFIX = "torchvision:"
KNOWN_MODELS = ("resnet18", "resnet34", "resnet50", "mobilenet_v3_small", "efficientnet_b0")
_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def _weights_sha256(path: Path) -> str:
    """sha256 of a weights file, hashed again only when the file changes (get_extractor asks
    on every call to notice replaced weights; the file is tens to hundreds of MB)."""
    stat = path.stat()
    return _sha256_of(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    del size, mtime_ns  # part of the cache key only
    return sha256_file(path)


class TorchvisionExtractor:
    """Per-frame features of a torchvision backbone loaded from ``weights_path``."""

    def __init__(self, model_name: str, weights_path: Path, batch_size: int = 16) -> None:
        try:
            import torchvision  # noqa: F401
        except ImportError as error:  # pragma: no cover - the extra is part of dev installs
            raise ExtractorUnavailable(
                "the torchvision extractor needs the 'pretrained' extra: "
                "pip install 'video-recsys[pretrained]'"
            ) from error
        self.model_name = model_name
        self.weights_path = Path(weights_path)
        if not self.weights_path.is_file():
            raise ExtractorUnavailable(
                f"weights for torchvision:{model_name} not found at {self.weights_path}; "
                f"put a state dict saved with torch.save(model.state_dict(), ...) there "
                f"(nothing is downloaded)"
            )
        self.name = f"{PREFIX}{model_name}"
        self.version = f"tv-{model_name}-1-{_weights_sha256(self.weights_path)[:12]}"
        self.batch_size = batch_size
        self._model = None
        self._lock = threading.Lock()

    def _load(self):  # type: ignore[no-untyped-def]
        import torch
        import torchvision

        with self._lock:
            if self._model is not None:
                return self._model
            try:
                model = torchvision.models.get_model(self.model_name, weights=None)
            except ValueError as error:
                raise ExtractorUnavailable(
                    f"torchvision has no model named {self.model_name!r}; pick one of "
                    "torchvision.models.list_models()"
                ) from error
            try:
                state = torch.load(self.weights_path, map_location="cpu", weights_only=True)
                model.load_state_dict(state)
            except Exception as error:
                raise ExtractorUnavailable(
                    f"cannot load weights {self.weights_path} into torchvision "
                    f"{self.model_name}: {error}"
                ) from error
            for head in ("fc", "classifier", "heads"):
                if hasattr(model, head):
                    setattr(model, head, torch.nn.Identity())
                    break
            model.eval()
            self._model = model
            return model

    def extract(self, decoded: DecodedVideo) -> VideoFeatures:
        import torch

        model = self._load()
        images = (decoded.frames.astype(np.float32) / 255.0 - _MEAN) / _STD
        tensor = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
        outputs = []
        with torch.inference_mode():
            for start in range(0, tensor.shape[0], self.batch_size):
                outputs.append(model(tensor[start : start + self.batch_size]).flatten(1))
        visual_seq = torch.cat(outputs).numpy().astype(np.float32)
        return VideoFeatures.from_sequences(
            self.name,
            self.version,
            visual_seq,
            audio_sequence(decoded),
            weights=str(self.weights_path),
        )
