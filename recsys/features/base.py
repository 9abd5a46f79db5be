"""Stage-A feature types: what an extractor returns and how it is stored without pickle.

A :class:`VideoFeatures` keeps the per-segment sequences (frames, ~1 s audio windows) next to
their pooled vectors, so stage B can both train on pooled vectors and build self-supervised views
from segment subsets without ever decoding the video again.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from recsys.errors import ConflictError, RecsysError, UserError

if TYPE_CHECKING:
    from recsys.media import DecodedVideo


class FeatureError(RecsysError, RuntimeError):
    """Features could not be computed, loaded or matched to an extractor."""


class ExtractorUnavailable(FeatureError, UserError):
    """The named extractor cannot be built here (unknown name, missing weights file, missing
    extra); the message says what to pass or install."""


class ExtractorMismatch(FeatureError, ConflictError):
    """Features of one extractor version meet a model (or cache key) of another; the message
    says to re-extract, install the matching version or train a model for it."""


def pool_sequence(sequence: np.ndarray) -> np.ndarray:
    """Mean and standard deviation over the segment axis, flattened: the pooled vector."""
    flat = np.asarray(sequence, dtype=np.float32).reshape(sequence.shape[0], -1)
    if flat.shape[0] == 0:
        raise FeatureError("cannot pool an empty segment sequence")
    return np.concatenate([flat.mean(axis=0), flat.std(axis=0)]).astype(np.float32)


@dataclass
class VideoFeatures:
    """Per-modality features of one video for one extractor version.

    ``visual``/``audio`` are pooled 1-d vectors; ``visual_seq``/``audio_seq`` hold one row per
    segment (frame or audio window; rows may be multi-dimensional for the ``cnn`` extractor).
    ``audio`` and ``audio_seq`` are None when the video has no audio track.
    """

    extractor: str
    extractor_version: str
    visual: np.ndarray
    visual_seq: np.ndarray
    audio: np.ndarray | None = None
    audio_seq: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)
    #: Per-modality parts as computed (raw rows, before a catalog PCA) for the feature cache;
    #: never saved with the features.
    parts: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_sequences(
        cls,
        extractor: str,
        extractor_version: str,
        visual_seq: np.ndarray,
        audio_seq: np.ndarray | None,
        **info: Any,
    ) -> VideoFeatures:
        """Features whose pooled vectors are the mean and std of the per-segment rows (the
        usual case; an extractor with another pooling builds the dataclass itself)."""
        return cls(
            extractor=extractor,
            extractor_version=extractor_version,
            visual=pool_sequence(visual_seq),
            visual_seq=visual_seq,
            audio=None if audio_seq is None else pool_sequence(audio_seq),
            audio_seq=audio_seq,
            info={
                "frames": int(visual_seq.shape[0]),
                "audio_windows": 0 if audio_seq is None else int(audio_seq.shape[0]),
                **info,
            },
        )

    @property
    def has_audio(self) -> bool:
        return self.audio is not None

    def to_npz(self, path: Path | str) -> None:
        """Write atomically (temporary name, then rename) with plain arrays only."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {
            "visual": self.visual,
            "visual_seq": self.visual_seq,
            "meta": np.array(
                json.dumps(
                    {
                        "extractor": self.extractor,
                        "extractor_version": self.extractor_version,
                        "info": self.info,
                    }
                )
            ),
        }
        if self.audio is not None:
            arrays["audio"] = self.audio
        if self.audio_seq is not None:
            arrays["audio_seq"] = self.audio_seq
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with tmp.open("wb") as handle:
            np.savez(handle, **arrays)  # type: ignore[arg-type]
        os.replace(tmp, path)

    def save(self, path: Path | str) -> None:
        """Write atomically as safetensors (``.npz`` paths keep the older zip format).

        safetensors reads back ~10x faster than a zip of ``.npy`` members, and a re-embed after a
        model change is nothing but these reads.
        """
        path = Path(path)
        if path.suffix == ".npz":
            self.to_npz(path)
            return
        from safetensors.numpy import save

        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {
            name: np.ascontiguousarray(array)
            for name, array in (
                ("visual", self.visual),
                ("visual_seq", self.visual_seq),
                ("audio", self.audio),
                ("audio_seq", self.audio_seq),
            )
            if array is not None
        }
        metadata = {
            "extractor": self.extractor,
            "extractor_version": self.extractor_version,
            "info": json.dumps(self.info),
        }
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(save(arrays, metadata=metadata))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path | str) -> VideoFeatures:
        """Read a feature file written by :meth:`save` (either format); FeatureError if bad."""
        path = Path(path)
        if path.suffix == ".npz":
            return cls.from_npz(path)
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="np") as handle:
                meta = handle.metadata() or {}
                arrays = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
            return cls(
                extractor=meta["extractor"],
                extractor_version=meta["extractor_version"],
                visual=arrays["visual"],
                visual_seq=arrays["visual_seq"],
                audio=arrays.get("audio"),
                audio_seq=arrays.get("audio_seq"),
                info=json.loads(meta.get("info", "{}")),
            )
        except (OSError, KeyError, ValueError, SafetensorError) as error:
            raise FeatureError(f"feature file {path} is unreadable ({error}); delete it") from error

    @classmethod
    def from_npz(cls, path: Path | str) -> VideoFeatures:
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                return cls(
                    extractor=meta["extractor"],
                    extractor_version=meta["extractor_version"],
                    visual=data["visual"],
                    visual_seq=data["visual_seq"],
                    audio=data["audio"] if "audio" in data.files else None,
                    audio_seq=data["audio_seq"] if "audio_seq" in data.files else None,
                    info=meta.get("info", {}),
                )
        except (OSError, KeyError, ValueError) as error:
            raise FeatureError(f"feature file {path} is unreadable ({error}); delete it") from error


@runtime_checkable
class FeatureExtractor(Protocol):
    """A named, versioned stage-A extractor; the version changes whenever its output does."""

    name: str
    version: str

    def extract(self, decoded: DecodedVideo) -> VideoFeatures: ...
