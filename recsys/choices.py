"""Every closed set of choices, declared once.

These ``StrEnum`` types are the field types of the config dataclasses (``TrainConfig``,
``ModelConfig``, ``BuildOptions``, ``RefreshOptions``, ``DemoOptions``, the settings and the API
options) *and* the Typer parameter types, so validation, error messages and the ``--help`` list of
allowed values all come from here. A ``StrEnum`` member is a ``str``: JSON, hashes and
comparisons with plain strings keep working.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TypeVar

from recsys.errors import UserError

E = TypeVar("E", bound=StrEnum)


class InvalidChoice(UserError, ValueError):
    """A value outside a closed set of choices; the message lists the allowed ones.

    Still a ``ValueError`` for callers that catch that."""


class Fusion(StrEnum):
    """Where the modalities meet: before one tower (early) or after a tower each (late)."""

    EARLY = "early"
    LATE = "late"


class Combine(StrEnum):
    """How late fusion combines the per-modality embeddings."""

    SUM = "sum"
    CONCAT = "concat"
    PRODUCT = "product"  # the paper's multiplicative combination


class InputKind(StrEnum):
    """What a model's towers read: pooled feature vectors or raw frames / log-mels (cnn)."""

    VECTOR = "vector"
    CNN = "cnn"


class Modality(StrEnum):
    VISUAL = "visual"
    AUDIO = "audio"


class PairSource(StrEnum):
    """The training signal: co-watch pairs, shared categories, or two windows of one video."""

    RELATED = "related"
    CATEGORIES = "categories"
    SELF = "self"


class Tower(StrEnum):
    """How a model's towers start: a plain MLP (random init), or a residual tower whose skip path
    is a PCA projection of the catalog's features, so the untrained model ranks like the
    content baseline and training can only add to it."""

    MLP = "mlp"
    RESIDUAL = "residual"


class Loss(StrEnum):
    TRIPLET = "triplet"  # hinge on squared L2 with semi-hard negatives (the paper's)
    INFONCE = "infonce"


class Engine(StrEnum):
    """Where the offline refresh runs: a local process pool or Ray Data."""

    LOCAL = "local"
    RAY = "ray"


class IndexKind(StrEnum):
    """Named index kinds; ``auto`` chooses from size and memory budget."""

    AUTO = "auto"
    FLAT = "flat"
    IVFFLAT = "ivfflat"
    IVFSQ = "ivfsq"
    IVFPQ = "ivfpq"
    HNSW = "hnsw"


class GpuMode(StrEnum):
    """Whether faiss uses a GPU: when it sees one (auto), always (on, an error without) or never."""

    AUTO = "auto"
    ON = "on"
    OFF = "off"


class IndexVerify(StrEnum):
    """When a published index file's checksum is computed: at its first load, trusted after
    while the file is unchanged (``once``), or at every load (``always``)."""

    ONCE = "once"
    ALWAYS = "always"


class TorchDevice(StrEnum):
    """Where torch runs stage B: ``auto`` picks CUDA when present."""

    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


class Cowatch(StrEnum):
    """What counts as watched together: one session (inactivity gap) or a sliding time window."""

    SESSION = "session"
    WINDOW = "window"


class Normalise(StrEnum):
    """Relatedness from co-watch counts: c_ij / (c_i * c_j) ** alpha (power) or positive PMI."""

    POWER = "power"
    PMI = "pmi"


class SimilarSource(StrEnum):
    """Where ``/similar`` neighbours come from: embeddings, the co-watch graph, or a blend."""

    CONTENT = "content"
    COLLABORATIVE = "collaborative"
    HYBRID = "hybrid"


class TagKind(StrEnum):
    """A video has one category (single label) and any number of tags (multi-label)."""

    CATEGORY = "category"
    TAG = "tag"


class TagMethod(StrEnum):
    """How the tags classifier scores a video: a linear probe or a vote of labelled neighbours."""

    PROBE = "probe"
    KNN = "knn"


class TagSource(StrEnum):
    """What the tags classifier reads: pooled stage-A features or the served embedding."""

    FEATURES = "features"
    EMBEDDING = "embedding"


def parse_choice(kind: type[E], value: str | E, what: str | None = None) -> E:
    """``value`` as a member of ``kind``; the error lists the allowed values."""
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        name = what or kind.__name__
        raise InvalidChoice(f"{name} must be one of {allowed}, not {value!r}") from None
