"""The co-watch neighbour lists an index version publishes (``cowatch.npz``).

At build (and update) time the ``related_pairs`` of the catalog (every source; a pair in
several sources keeps its largest weight) are read once, restricted to the video keys the new
index serves, and turned into :class:`~recsys.events.hybrid.NeighbourLists`. They are written
into the version directory with a checksum in the manifest, so the pointer swap that serves
the index serves its graph: a snapshot never mixes graph and index versions, and the API's hot
path reads precomputed lists (no aggregation per request).
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import select

from recsys.db import Database
from recsys.db.models import RelatedPair
from recsys.events.hybrid import DEFAULT_TOP_N, NeighbourLists

COWATCH_FILE = "cowatch.npz"


def read_cowatch(
    database: Database, served: np.ndarray, top_n: int = DEFAULT_TOP_N
) -> NeighbourLists:
    """Neighbour lists of the related pairs whose two ends are both in ``served`` (keys)."""
    with database.session() as session:
        rows = session.execute(
            select(RelatedPair.video_a, RelatedPair.video_b, RelatedPair.weight)
        ).all()
    if not rows:
        return NeighbourLists.empty()
    a = np.fromiter((r[0] for r in rows), np.int64, len(rows))
    b = np.fromiter((r[1] for r in rows), np.int64, len(rows))
    w = np.fromiter((r[2] for r in rows), np.float64, len(rows))
    served = np.asarray(served, np.int64)
    keep = np.isin(a, served) & np.isin(b, served)
    return NeighbourLists.from_pairs(a[keep], b[keep], w[keep], top_n=top_n)
