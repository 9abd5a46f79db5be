"""The two names of a video, kept apart by name and by type.

* ``video_id`` (``str``): the external id users, manifests and URLs use.
* ``video_key`` (:data:`VideoKey`, ``int``): the internal int64 key, ``videos.id`` in the
  database, the id every FAISS index and embedding shard stores.
"""

from __future__ import annotations

from typing import NewType

VideoKey = NewType("VideoKey", int)
