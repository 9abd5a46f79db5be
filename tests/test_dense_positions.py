"""Key -> position tables (:func:`recsys.ids.dense_positions`): the catalog snapshot and the
loaded index map a search's keys with them instead of a binary search per key."""

from __future__ import annotations

import numpy as np

from recsys.ids import DENSE_SPAN, dense_positions, positions_in


def test_compact_keys_map_to_their_positions_and_gaps_to_minus_one() -> None:
    keys = np.array([1, 2, 3, 7, 8, 20], dtype=np.int64)  # autoincrement with deletions
    table = dense_positions(keys)
    assert table is not None and table.shape == (21,)
    assert table[keys].tolist() == [0, 1, 2, 3, 4, 5]
    assert table[[0, 4, 6, 19]].tolist() == [-1, -1, -1, -1]


def test_sparse_negative_or_no_keys_have_no_table() -> None:
    n = 2000
    sparse = np.arange(n, dtype=np.int64) * (DENSE_SPAN + 1)  # spread wider than the span
    assert dense_positions(sparse) is None
    assert dense_positions(np.array([-5, 1, 2], dtype=np.int64)) is None
    assert dense_positions(np.zeros(0, dtype=np.int64)) is None
    compact = np.arange(n, dtype=np.int64) * DENSE_SPAN  # just inside
    assert dense_positions(compact) is not None


def test_positions_are_the_same_through_the_table_or_a_binary_search() -> None:
    keys = np.array([1, 2, 3, 7, 8, 20], dtype=np.int64)
    table = dense_positions(keys)
    found = np.array([8, 1, 20], dtype=np.int64)  # as a search returns them
    strays = np.array([7, 0, -3, 21, 10**9, 3], dtype=np.int64)  # gaps, outside, far away
    for asked, expected in ((found, [4, 0, 5]), (strays, [3, -1, -1, -1, -1, 2])):
        assert positions_in(keys, table, asked).tolist() == expected
        assert positions_in(keys, None, asked).tolist() == expected
    empty = np.zeros(0, dtype=np.int64)
    assert positions_in(empty, None, found).tolist() == [-1, -1, -1]
    assert positions_in(keys, table, empty).tolist() == []
