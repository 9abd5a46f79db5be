"""One modality's features of one video: what a visual + audio spec caches per encoder.

Its own module so that the extractors that make parts (:mod:`recsys.features.composite`) and
the cache that stores them (:mod:`recsys.features.cache`) both import it without importing
each other.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recsys.features.base import FeatureError


@dataclass
class Part:
    """One modality's features of one video; ``seq`` None means "the video has no audio"."""

    seq: np.ndarray | None
    info: dict[str, Any] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        """Write the part as one safetensors file (the one-file entry layout of older caches)."""
        from safetensors.numpy import save

        arrays = {} if self.seq is None else {"seq": np.ascontiguousarray(self.seq)}
        metadata = {"present": "1" if self.seq is not None else "0", "info": json.dumps(self.info)}
        path.write_bytes(save(arrays, metadata=metadata))

    @classmethod
    def load(cls, path: Path) -> Part:
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="np") as handle:
                meta = handle.metadata() or {}
                seq = handle.get_tensor("seq") if meta.get("present") == "1" else None
            return cls(seq, json.loads(meta.get("info", "{}")))
        except (OSError, KeyError, ValueError, SafetensorError) as error:
            raise FeatureError(f"feature file {path} is unreadable ({error}); delete it") from error
