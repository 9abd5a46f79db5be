"""Pretrained weights: a registry of known files and their local store (fetch, verify, path)."""

from recsys.weights.registry import (
    WeightsEntry,
    add_weights_source,
    find_entry,
    get_entry,
    known_weights,
    register_weights,
)
from recsys.weights.store import (
    MIRROR_ENV,
    UnverifiedWeights,
    VerifyReport,
    WeightsError,
    check_usable,
    fetch,
    full_sha256,
    locate,
    pin,
    source_url,
    verify,
    weights_path,
)

__all__ = [
    "MIRROR_ENV",
    "UnverifiedWeights",
    "VerifyReport",
    "WeightsEntry",
    "WeightsError",
    "add_weights_source",
    "check_usable",
    "fetch",
    "find_entry",
    "full_sha256",
    "get_entry",
    "known_weights",
    "locate",
    "pin",
    "register_weights",
    "source_url",
    "verify",
    "weights_path",
]
