"""The index choice is pure arithmetic: checked over many sizes without building anything."""

from __future__ import annotations

import math

import faiss
import pytest

from index.choose import (
    FLAT_MAX,
    MIN_POINTS_PER_CENTROID,
    choose_index,
    ivf_nlist,
    parse_memory,
)
from index.errors import IndexBuildError
from recsys.choices import IndexKind

GIB = 1 << 30


@pytest.mark.parametrize("count", [1, 10, 999, 10_000, 49_999, FLAT_MAX])
@pytest.mark.parametrize("dim", [32, 256, 1024])
def test_small_catalogs_get_exact_search(count: int, dim: int) -> None:
    choice = choose_index(count, dim, "4G")
    assert choice.factory == "Flat"
    assert choice.train_size == 0


@pytest.mark.parametrize("count", [FLAT_MAX + 1, 80_000, 100_000, 300_000, 1_000_000, 3_000_000])
def test_mid_catalogs_get_ivf_flat_with_sqrt_lists(count: int) -> None:
    choice = choose_index(count, 256, "16G")
    assert choice.kind == "ivfflat"
    nlist = int(choice.factory.removeprefix("IVF").split(",")[0])
    assert choice.factory == f"IVF{nlist},Flat"
    assert math.sqrt(count) < nlist <= 2 * math.sqrt(count)  # the power of two in (√n, 2√n]
    assert nlist & (nlist - 1) == 0
    assert choice.train_size >= MIN_POINTS_PER_CENTROID * nlist
    assert choice.train_size <= count
    assert choice.estimated_bytes <= 16 * GIB


@pytest.mark.parametrize(
    ("count", "budget"),
    [(100_000, "50M"), (1_000_000, "512M"), (5_000_000, "2G"), (10_000_000, "3G")],
)
def test_short_memory_gets_8bit_vectors_within_budget(count: int, budget: str) -> None:
    choice = choose_index(count, 256, budget)
    assert choice.kind == "ivfsq"
    assert choice.factory.startswith("IVF") and choice.factory.endswith(",SQ8")
    assert choice.estimated_bytes <= parse_memory(budget)
    assert choice.train_size <= count


@pytest.mark.parametrize(
    ("count", "budget"), [(1_000_000, "600M"), (5_000_000, "4G"), (10_000_000, "6G")]
)
def test_half_the_full_vectors_gets_half_precision_within_budget(count: int, budget: str) -> None:
    choice = choose_index(count, 256, budget)
    assert choice.kind == "ivfsq" and choice.factory.endswith(",SQfp16")
    assert (
        choice.estimated_bytes
        <= parse_memory(budget)
        < choose_index(count, 256, "64G").estimated_bytes
    )


@pytest.mark.parametrize(
    ("count", "budget"),
    [(1_000_000, "200M"), (20_000_000, "4G"), (100_000_000, "8G"), (300_000, "20M")],
)
def test_tight_memory_gets_compressed_codes_within_budget(count: int, budget: str) -> None:
    choice = choose_index(count, 256, budget)
    assert choice.kind == "ivfpq"
    assert choice.factory.startswith("OPQ")
    assert ",PQ" in choice.factory
    assert choice.estimated_bytes <= parse_memory(budget)
    m = int(choice.factory.split(",PQ")[1])
    assert 256 % m == 0


def test_more_memory_never_gives_a_smaller_code() -> None:
    sizes = []
    for budget in ("300M", "600M", "1G", "2G", "8G"):
        choice = choose_index(5_000_000, 256, budget)
        sizes.append(choice.estimated_bytes)
    assert sizes == sorted(sizes)


@pytest.mark.parametrize(("count", "budget"), [(1_000_000, "10M"), (5_000, "1K")])
def test_impossible_budget_is_refused_with_advice(count: int, budget: str) -> None:
    with pytest.raises(IndexBuildError, match="--memory-budget"):
        choose_index(count, 256, budget)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (IndexKind.FLAT, "Flat"),
        (IndexKind.HNSW, "HNSW32,Flat"),
        (IndexKind.IVFFLAT, "IVF"),
        (IndexKind.IVFSQ, "IVF"),
        (IndexKind.IVFPQ, "OPQ"),
    ],
)
def test_explicit_kinds(kind: IndexKind, expected: str) -> None:
    assert choose_index(200_000, 128, "8G", kind).factory.startswith(expected)


def test_factory_string_passes_through_and_id_maps_are_refused() -> None:
    choice = choose_index(20_000, 64, "4G", factory="IVF64,PQ8")
    assert (choice.factory, choice.kind) == ("IVF64,PQ8", "custom")
    assert choice.train_size >= 256 * MIN_POINTS_PER_CENTROID or choice.train_size == 20_000
    with pytest.raises(IndexBuildError, match="ids are attached"):
        choose_index(20_000, 64, "4G", factory="IDMap2,Flat")
    with pytest.raises(IndexBuildError, match="needs at least"):
        choose_index(100, 64, "4G", factory="IVF1024,Flat")


def test_ivfpq_needs_enough_vectors_for_codebooks() -> None:
    with pytest.raises(IndexBuildError, match="flat"):
        choose_index(1_000, 64, "4G", IndexKind.IVFPQ)


@pytest.mark.parametrize("count", [0, -5])
def test_no_vectors_is_an_error(count: int) -> None:
    with pytest.raises(IndexBuildError, match="embed"):
        choose_index(count, 64)


@pytest.mark.parametrize(
    ("count", "dim", "budget", "kind"),
    [
        (1000, 64, "4G", IndexKind.AUTO),
        (60_000, 64, "4G", IndexKind.AUTO),
        (2_000_000, 256, "1G", IndexKind.AUTO),
        (10_000, 96, "4G", IndexKind.HNSW),
        (30_000, 96, "4G", IndexKind.IVFPQ),
    ],
)
def test_chosen_factories_are_valid_faiss_strings(
    count: int, dim: int, budget: str, kind: IndexKind
) -> None:
    choice = choose_index(count, dim, budget, kind)
    index = faiss.index_factory(dim, choice.factory, faiss.METRIC_INNER_PRODUCT)  # empty, untrained
    assert index.d == dim


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4G", 4 * GIB),
        ("512M", 512 << 20),
        ("1.5GB", int(1.5 * GIB)),
        ("800MiB", 800 << 20),
        ("1024", 1024),
        ("2t", 2 << 40),
        (123, 123),
    ],
)
def test_parse_memory(text: str | int, expected: int) -> None:
    assert parse_memory(text) == expected


@pytest.mark.parametrize("text", ["", "four gigs", "4X", "-1G"])
def test_parse_memory_rejects_garbage(text: str) -> None:
    with pytest.raises(IndexBuildError, match="memory size"):
        parse_memory(text)


@pytest.mark.parametrize("count", [1, 50, 1_000, 40_000, 10**6, 10**8])
def test_nlist_keeps_enough_points_per_list(count: int) -> None:
    nlist = ivf_nlist(count)
    assert nlist >= 1
    assert nlist == 1 or count / nlist >= MIN_POINTS_PER_CENTROID
