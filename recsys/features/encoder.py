"""What a visual or audio encoder of a stage-A spec has in common.

An encoder names its inputs (frames or clips at a size, audio at a rate), runs its network on
many videos at once (:meth:`Encoder.encode`: all inputs of a batch go through the network in
chunks, whatever video they came from) and has a version that changes whenever its output does
(the sha256 of its weights file included). Networks load lazily on first use, on the device the
caller chose (:meth:`Encoder.to`); on CUDA they run under float16 autocast.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recsys.checksums import sha256_file
from recsys.features.base import ExtractorUnavailable, FeatureError
from recsys.features.checkpoints import WEIGHTS_SUFFIXES, find_weights
from recsys.features.pooling import DEFAULT_POOLING

if TYPE_CHECKING:
    import torch

    from recsys.settings import Settings

#: One item's encoding: its rows, or why it has none.
Encoded = np.ndarray | FeatureError


def weights_sha256(path: Path) -> str:
    """sha256 of a weights file, hashed again only when the file changes: a rewrite that keeps
    size and mtime still moves the ctime (or the inode, when the file is replaced)."""
    stat = path.stat()
    return _sha256_of(str(path), (stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns))


@functools.lru_cache(maxsize=64)
def _sha256_of(path: str, version: tuple[int, int, int, int]) -> str:
    del version  # part of the cache key only
    return sha256_file(path)


def resolve_weights(
    settings: Settings, component: str, stem: str, registry_name: str | None, explicit: Path | None
) -> tuple[Path, str]:
    """The weights file of an encoder and its sha256, checked against the registry.

    ``explicit`` wins; a registered name is read from its registered file only (the file
    ``recsys weights verify`` checks), which must verify or have been vouched for (see
    :mod:`recsys.weights`); an unregistered one from ``weights_dir/<stem>.<suffix>``, the
    first of :data:`WEIGHTS_SUFFIXES` there.
    """
    from recsys.weights import UnverifiedWeights, check_usable, find_entry

    directory = settings.weights_dir
    entry = find_entry(registry_name) if registry_name else None
    if explicit is not None:
        path: Path | None = explicit
    elif entry is not None:
        path = directory / entry.filename
    else:
        path = find_weights(directory, stem)
    if path is None or not path.is_file():
        shown = path or directory / f"{stem}.pth"
        tried = (
            ""
            if explicit is not None or entry is not None
            else (f" (also tried {'/'.join(WEIGHTS_SUFFIXES)})")
        )
        fetch = f"`recsys weights fetch {registry_name}` or " if registry_name else ""
        raise ExtractorUnavailable(
            f"weights for {component} not found at {shown}{tried}: {fetch}put a state dict "
            "there (torch.save(model.state_dict(), ...) or safetensors); nothing is downloaded"
        )
    path = path.expanduser().resolve()
    digest = weights_sha256(path)
    if entry is not None and path == (directory / entry.filename).expanduser().resolve():
        try:
            check_usable(settings, entry.name, path, digest)
        except UnverifiedWeights as error:
            raise ExtractorUnavailable(str(error)) from None
    return path, digest


class Encoder:
    """Base of every encoder: lazy model, device, batched inference."""

    modality: str = ""
    name: str = ""
    version: str = ""
    deep: bool = True
    #: Visual: "frames" (N, S, S, 3) or "clips" (C, T, S, S, 3); audio encoders leave it.
    kind: str = "frames"
    size: int = 0  # decoded frame size (short side, then the centre square)
    clip_frames: int = 0
    sample_rate: int = 0  # audio encoders: the rate they expect
    dim: int | None = None
    chunk: int = 32  # network inputs per forward pass
    weights_path: Path | None = None
    #: Visual: how the frame rows are pooled unless the spec says (recsys.features.pooling).
    pooling: str = DEFAULT_POOLING

    def __init__(self) -> None:
        self.device = "cpu"
        self._model: Any = None
        self._lock = threading.Lock()

    def to(self, device: str) -> None:
        """Run on ``device`` from now on (the loaded network moves with it)."""
        if device == self.device:
            return
        self.device = device
        if self._model is not None:
            self._model.to(device)

    def model(self) -> Any:
        with self._lock:
            if self._model is None:
                model = self.build()
                model.eval()
                self._model = model.to(self.device)
            return self._model

    def build(self) -> Any:  # pragma: no cover - overridden by deep encoders
        raise NotImplementedError

    @contextlib.contextmanager
    def inference(self) -> Iterator[None]:
        import torch

        with torch.inference_mode():
            if self.device.startswith("cuda"):
                with torch.autocast("cuda", dtype=torch.float16):
                    yield
            else:
                yield

    def run_chunks(
        self, fn: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor
    ) -> np.ndarray:
        """``fn`` over ``inputs`` in chunks of :attr:`chunk`, on the device, as float32 numpy."""
        import torch

        outputs = []
        with self.inference():
            for start in range(0, inputs.shape[0], self.chunk):
                part = inputs[start : start + self.chunk].to(self.device, non_blocking=True)
                outputs.append(fn(part).float().flatten(1).cpu())
        return (
            torch.cat(outputs).numpy().astype(np.float32)
            if outputs
            else np.zeros((0, 0), np.float32)
        )

    def encode(self, items: Sequence[np.ndarray]) -> list[Encoded]:  # pragma: no cover
        raise NotImplementedError

    def encode_prepared(
        self,
        items: Sequence[Any],
        prepare: Callable[[Any], torch.Tensor],
        fn: Callable[[torch.Tensor], torch.Tensor],
    ) -> list[Encoded]:
        """``prepare`` each item into network inputs (a FeatureError stays with its item), then
        ``fn`` over the inputs of all items together, in chunks; rows split back per item."""
        import torch

        prepared: list[torch.Tensor] = []
        out: list[Encoded | None] = []
        for item in items:
            try:
                prepared.append(prepare(item))
                out.append(None)
            except FeatureError as error:
                out.append(error)
        if prepared:
            rows = self.run_chunks(fn, torch.cat(prepared))
            blocks = iter(split_rows(rows, [p.shape[0] for p in prepared]))
            out = [next(blocks) if item is None else item for item in out]
        return [item for item in out if item is not None]


def split_rows(rows: np.ndarray, counts: Sequence[int]) -> list[np.ndarray]:
    """Rows of a concatenated batch back into per-item blocks."""
    bounds = np.cumsum([0, *counts])
    return [rows[bounds[i] : bounds[i + 1]] for i in range(len(counts))]
