"""Append-only, versioned embedding store, compacted into a few files per model version."""

from recsys.store.compact import CompactionResult, compact_store
from recsys.store.embeddings import EmbeddingMatrix, EmbeddingStore, ShardMoved, StoreError

__all__ = [
    "CompactionResult",
    "EmbeddingMatrix",
    "EmbeddingStore",
    "ShardMoved",
    "StoreError",
    "compact_store",
]
