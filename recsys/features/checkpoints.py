"""Reading weights files safely and loading them strictly, with errors that name the file.

Only two formats are read: safetensors, and ``torch.save`` files through
``torch.load(..., weights_only=True)`` (which refuses arbitrary pickles). A checkpoint may wrap
its state dict (``{"model": ...}``, ``{"state_dict": ...}``) and prefix keys with ``module.``
(DataParallel); both are unwrapped. Loading is strict: a missing or unexpected key or a shape
that differs is an :class:`ExtractorUnavailable` naming the file and the first offending keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from recsys.features.base import ExtractorUnavailable

if TYPE_CHECKING:
    import torch

#: Extensions tried, in order, for a weights file named by its stem.
WEIGHTS_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".npz")
_WRAPPERS = ("state_dict", "model", "module", "model_state_dict")


def find_weights(directory: Path, stem: str) -> Path | None:
    """``directory/stem<suffix>`` for the first suffix that exists."""
    for suffix in WEIGHTS_SUFFIXES:
        candidate = directory / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file (safetensors or a weights-only torch file)."""
    import torch

    if not path.is_file():
        raise ExtractorUnavailable(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path)))
        except (SafetensorError, OSError, ValueError) as error:
            raise ExtractorUnavailable(
                f"weights file {path} is not valid safetensors: {error}"
            ) from None
    try:
        loaded: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - pickle.UnpicklingError, EOFError, RuntimeError
        text = str(error).splitlines()[0] if str(error) else type(error).__name__
        if "weights_only" in str(error) or "Unsupported global" in str(error):
            raise ExtractorUnavailable(
                f"weights file {path} holds more than tensors and was refused by "
                f"torch.load(weights_only=True) ({text}); re-save it as a plain state dict "
                "(torch.save(model.state_dict(), ...)) or as safetensors"
            ) from None
        raise ExtractorUnavailable(
            f"weights file {path} cannot be read ({text}); it may be truncated: fetch it again"
        ) from None
    return unwrap_state_dict(loaded, path)


def unwrap_state_dict(loaded: Any, path: Path) -> dict[str, torch.Tensor]:
    import torch

    for _ in range(3):
        if isinstance(loaded, dict) and not any(
            isinstance(v, torch.Tensor) for v in loaded.values()
        ):
            inner = next((loaded[k] for k in _WRAPPERS if isinstance(loaded.get(k), dict)), None)
            if inner is None:
                break
            loaded = inner
    if not isinstance(loaded, dict) or not loaded:
        raise ExtractorUnavailable(f"weights file {path} holds no state dict")
    tensors = {str(k): v for k, v in loaded.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ExtractorUnavailable(f"weights file {path} holds no tensors")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k.removeprefix("module."): v for k, v in tensors.items()}
    return tensors


def _few(keys: list[str]) -> str:
    shown = ", ".join(keys[:4])
    return shown + (f" and {len(keys) - 4} more" if len(keys) > 4 else "")


def load_strict(
    module: torch.nn.Module, state: dict[str, torch.Tensor], path: Path, what: str
) -> None:
    """``module.load_state_dict(state, strict=True)`` with an error naming file and keys."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_few(missing)}")
    if extra:
        problems.append(f"unexpected keys: {_few(extra)}")
    if shapes:
        problems.append(f"shape mismatches: {_few(shapes)}")
    if problems:
        hint = (
            " (weights of another architecture?)"
            if (len(missing) > len(expected) // 2 or shapes)
            else ""
        )
        raise ExtractorUnavailable(
            f"weights file {path} does not fit {what}{hint}: {'; '.join(problems)}"
        )
    module.load_state_dict(state, strict=True)
