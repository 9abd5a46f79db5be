"""Extractors by name: ``content`` (default), ``cnn`` and ``torchvision:<model>``."""

from __future__ import annotations

import threading
from pathlib import Path

from recsys.features.base import ExtractorUnavailable, FeatureExtractor
from recsys.features.cnn import CnnInputExtractor
from recsys.features.content import ContentExtractor
from recsys.features.pretrained import KNOWN_MODELS, PREFIX, TorchvisionExtractor
from recsys.settings import Settings, load_settings

_BUILTIN: dict[str, type[ContentExtractor] | type[CnnInputExtractor]] = {
    "content": ContentExtractor,
    "cnn": CnnInputExtractor,
}
_instances: dict[tuple[str, str], FeatureExtractor] = {}
_lock = threading.Lock()


def available_extractors() -> list[str]:
    """Names ``get_extractor`` accepts (torchvision ones need a local weights file)."""
    return [*_BUILTIN, *(f"{PREFIX}{model}" for model in KNOWN_MODELS)]


def get_extractor(
    name: str, *, settings: Settings | None = None, weights_path: Path | str | None = None
) -> FeatureExtractor:
    """The extractor called ``name``; one shared instance per (name, weights file).

    ``torchvision:<model>`` reads ``weights_path`` or ``settings.weights_dir/<model>.pth``.
    """
    if name in _BUILTIN:
        key = (name, "")
        with _lock:
            if key not in _instances:
                _instances[key] = _BUILTIN[name]()
            return _instances[key]
    if name.startswith(PREFIX):
        model = name.removeprefix(PREFIX)
        if not model:
            raise ExtractorUnavailable("name a torchvision model, e.g. torchvision:resnet18")
        if weights_path is None:
            settings = settings or load_settings()
            weights_path = settings.weights_dir / f"{model}.pth"
        path = Path(weights_path).expanduser().resolve()
        extractor = TorchvisionExtractor(model, path)  # checks the file, hashes the weights
        key = (name, str(path))
        with _lock:
            cached = _instances.get(key)
            if cached is not None and cached.version == extractor.version:
                return cached  # keeps the already loaded backbone
            _instances[key] = extractor
        return extractor
    raise ExtractorUnavailable(
        f"unknown feature extractor {name!r}; available: {', '.join(available_extractors())}"
    )
