"""Search-time knobs (``nprobe`` for IVF, ``efSearch`` for HNSW) of any wrapped faiss index.

Indexes are nested (``IndexIDMap2`` around HNSW, ``IndexPreTransform`` (OPQ) around IVF), so
these helpers find the inner index that owns the knob, and build per-call
``SearchParameters`` carrying both the knob and an optional id selector (used to hide ids).
"""

from __future__ import annotations

from typing import Any

import faiss


def _unwrap(index: faiss.Index) -> faiss.Index:
    """The innermost index below IDMap/PreTransform wrappers (downcast to its real type)."""
    index = faiss.downcast_index(index)
    while True:
        if isinstance(index, faiss.IndexIDMap | faiss.IndexIDMap2 | faiss.IndexPreTransform):
            index = faiss.downcast_index(index.index)
            continue
        return index


def search_param_name(index: faiss.Index) -> str | None:
    """``"nprobe"``, ``"efSearch"`` or None (exact indexes have nothing to tune)."""
    inner = _unwrap(index)
    if faiss.try_extract_index_ivf(inner) is not None:
        return "nprobe"
    if isinstance(inner, faiss.IndexHNSW):
        return "efSearch"
    return None


def search_param_values(index: faiss.Index) -> list[int]:
    """Increasing candidate values for the search knob, cheapest first."""
    name = search_param_name(index)
    if name == "nprobe":
        nlist = int(faiss.extract_index_ivf(index).nlist)
        values = [1 << i for i in range(20) if (1 << i) < nlist]
        return [*values, nlist]
    if name == "efSearch":
        return [16, 32, 64, 128, 256, 512, 1024, 2048]
    return []


def apply_search_params(index: faiss.Index, params: dict[str, Any]) -> None:
    """Set the knobs on the index itself (used for plain searches)."""
    name = search_param_name(index)
    if name is None or name not in params:
        return
    value = int(params[name])
    if name == "nprobe":
        faiss.extract_index_ivf(index).nprobe = value
    else:
        _unwrap(index).hnsw.efSearch = value  # type: ignore[attr-defined]


def current_search_params(index: faiss.Index) -> dict[str, int]:
    name = search_param_name(index)
    if name == "nprobe":
        return {"nprobe": int(faiss.extract_index_ivf(index).nprobe)}
    if name == "efSearch":
        return {"efSearch": int(_unwrap(index).hnsw.efSearch)}  # type: ignore[attr-defined]
    return {}


def effort_limit(index: faiss.Index) -> int:
    """How many times the configured ``nprobe``/``efSearch`` a search may be widened until it
    covers the whole index (1 for exact indexes, which always see everything)."""
    name = search_param_name(index)
    if name == "nprobe":
        ivf = faiss.extract_index_ivf(index)
        return max(1, -(-int(ivf.nlist) // max(1, int(ivf.nprobe))))
    if name == "efSearch":
        ef = max(1, int(_unwrap(index).hnsw.efSearch))  # type: ignore[attr-defined]
        return max(1, -(-max(int(index.ntotal), ef) // ef))
    return 1


class SelectorParams:
    """``SearchParameters`` for one index, an optional id selector and a search effort,
    keeping the SWIG objects alive.

    ``effort`` multiplies the index's ``nprobe`` (capped at ``nlist``) or ``efSearch``, or
    ``knob`` instead when given (a filtered search starts from the value the gate tuned for
    its selectivity): a filtered query that runs out of candidates in the probed lists asks
    again wider.
    """

    def __init__(
        self,
        index: faiss.Index,
        selector: faiss.IDSelector | None,
        effort: int = 1,
        knob: int | None = None,
    ) -> None:
        self.selector = selector
        self._keep: list[Any] = [selector]
        self._effort = max(1, int(effort))
        self._knob = knob
        index = faiss.downcast_index(index)
        self.params = self._for(index, selector)

    def _for(self, index: faiss.Index, selector: faiss.IDSelector | None) -> Any:
        if isinstance(index, faiss.IndexIDMap | faiss.IndexIDMap2):
            # IndexIDMap translates the selector to inner positions and forwards the params.
            params = self._for(faiss.downcast_index(index.index), None)
            params.sel = selector
            return params
        if isinstance(index, faiss.IndexPreTransform):
            inner = self._for(faiss.downcast_index(index.index), selector)
            params = faiss.SearchParametersPreTransform()
            params.index_params = inner
            self._keep.append(inner)
            return params
        ivf = faiss.try_extract_index_ivf(index)
        if ivf is not None:
            params = faiss.SearchParametersIVF()
            base = int(ivf.nprobe) if self._knob is None else int(self._knob)
            params.nprobe = min(int(ivf.nlist), base * self._effort)
        elif isinstance(index, faiss.IndexHNSW):
            params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]
            base = int(index.hnsw.efSearch) if self._knob is None else int(self._knob)
            params.efSearch = base * self._effort
        else:
            params = faiss.SearchParameters()
        if selector is not None:
            params.sel = selector
        self._keep.append(params)
        return params
