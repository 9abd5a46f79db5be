"""What ``build`` and ``update`` take: the recall gate's options, declared once.

:class:`GateOptions` is the gate every published index passes (how many held-out queries, at
how many neighbours, how much recall against exact search, which seed). :class:`BuildOptions`
extends it with what to build; :class:`UpdateOptions` carries one (or inherits the gate the
active index passed). The CLI reads its defaults from these classes, so a default is written
once. Every field is checked when the options are made, with a message naming the option.
"""

from __future__ import annotations

from dataclasses import dataclass

from index.errors import IndexBuildError
from recsys.choices import E, GpuMode, IndexKind, parse_choice


@dataclass(frozen=True, kw_only=True)
class GateOptions:
    """The recall gate: ``queries`` held-out vectors, recall@``k`` ≥ ``min_recall``."""

    min_recall: float = 0.95
    k: int = 10
    queries: int = 1000  # held-out queries (at most the number of vectors are used)
    seed: int = 0  # of the query sample (and, for a build, of the training sample)

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_recall <= 1.0:
            raise IndexBuildError(f"--min-recall must be within [0, 1], got {self.min_recall}")
        if self.k < 1:
            raise IndexBuildError(f"--k must be at least 1, got {self.k}")
        if self.queries < 1:
            raise IndexBuildError(f"--queries must be at least 1, got {self.queries}")

    @property
    def gate(self) -> GateOptions:
        """The gate fields alone (the same object for a plain :class:`GateOptions`)."""
        if type(self) is GateOptions:
            return self
        return GateOptions(
            min_recall=self.min_recall, k=self.k, queries=self.queries, seed=self.seed
        )


@dataclass(frozen=True, kw_only=True)
class BuildOptions(GateOptions):
    """What ``recsys index build`` takes: the gate plus what to build and where.

    ``kind`` picks a named index type (``auto`` chooses from size and memory budget);
    ``factory`` is a faiss factory string instead (``kind`` must then stay ``auto``).
    """

    model_version: str | None = None  # None: the active model
    kind: IndexKind = IndexKind.AUTO
    factory: str | None = None
    memory_budget: str | int = "4G"
    gpu: GpuMode = GpuMode.AUTO
    publish: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        kind = choice(IndexKind, self.kind, "--kind")
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "factory", _factory(kind, self.factory))
        object.__setattr__(self, "gpu", choice(GpuMode, self.gpu, "--gpu"))


@dataclass(frozen=True, kw_only=True)
class UpdateOptions:
    """What ``recsys index update`` takes.

    ``gate`` None re-checks the updated index with the gate the active index passed (its
    manifest's ``min_recall``, ``k``, ``queries`` and ``seed``), so an index built with a strict
    gate is not published after an update under a looser one.
    """

    gate: GateOptions | None = None
    publish: bool = True

    def __post_init__(self) -> None:
        if self.gate is not None and not isinstance(self.gate, GateOptions):
            raise IndexBuildError(f"UpdateOptions.gate must be GateOptions, not {self.gate!r}")


def choice(kind: type[E], value: object, option: str) -> E:
    """``value`` as a member of ``kind``; :class:`IndexBuildError` (a UserError) otherwise."""
    try:
        return parse_choice(kind, value if isinstance(value, str) else str(value), option)
    except ValueError as error:
        raise IndexBuildError(str(error)) from None


def _factory(kind: IndexKind, factory: str | None) -> str | None:
    """``factory`` stripped; refused when empty or beside a named kind."""
    if factory is None:
        return None
    factory = factory.strip()
    if not factory:
        raise IndexBuildError("--factory is empty: give a faiss factory string, e.g. IVF1024,Flat")
    if kind is not IndexKind.AUTO:
        raise IndexBuildError(
            f"--kind {kind.value} and --factory {factory!r} exclude each other: give one"
        )
    return factory
