"""Extractors by name: ``content`` (default), ``cnn``, and visual + audio specs.

A spec such as ``visual=open_clip:ViT-B-32,audio=vggish`` (see :mod:`recsys.features.spec`)
builds a :class:`~recsys.features.composite.CompositeExtractor`; ``torchvision:<model>`` is the
spec ``visual=torchvision:<model>,audio=content``.
"""

from __future__ import annotations

import threading
from pathlib import Path

from recsys.choices import Modality
from recsys.features.base import FeatureExtractor
from recsys.features.cnn import CnnInputExtractor
from recsys.features.composite import CompositeExtractor
from recsys.features.content import ContentExtractor
from recsys.features.encoder_registry import describe
from recsys.features.spec import parse_spec
from recsys.features.visual_encoders import TORCHVISION
from recsys.settings import Settings, load_settings

_BUILTIN: dict[str, type[ContentExtractor] | type[CnnInputExtractor]] = {
    "content": ContentExtractor,
    "cnn": CnnInputExtractor,
}
_instances: dict[tuple[str, str], FeatureExtractor] = {}
_lock = threading.Lock()


def available_extractors() -> list[str]:
    """Names ``get_extractor`` accepts (deep encoders need their weights file)."""
    return [
        *_BUILTIN,
        *(TORCHVISION.name(model) for model in TORCHVISION.variants),
        f"visual={describe(Modality.VISUAL)},audio={describe(Modality.AUDIO)}",
    ]


def get_extractor(
    name: str, *, settings: Settings | None = None, weights_path: Path | str | None = None
) -> FeatureExtractor:
    """The extractor called ``name``; one shared instance per (name, home, weights file).

    ``weights_path`` overrides where the visual encoder's weights are read (by default
    ``settings.weights_dir``; see ``recsys weights path``). An instance is rebuilt when its
    version changed (replaced weights), else reused with its loaded networks.
    """
    if name in _BUILTIN:
        key = (name, "")
        with _lock:
            if key not in _instances:
                _instances[key] = _BUILTIN[name]()
            return _instances[key]
    spec = parse_spec(name)
    settings = settings or load_settings()
    explicit = Path(weights_path).expanduser().resolve() if weights_path is not None else None
    extractor = CompositeExtractor(spec, settings, explicit)  # checks and hashes the weights
    key = (spec.name, f"{settings.resolved_home}|{explicit}")
    with _lock:
        cached = _instances.get(key)
        if cached is not None and cached.version == extractor.version:
            return cached  # keeps the already loaded networks
        _instances[key] = extractor
    return extractor
