"""Append-only, versioned embedding store."""

from recsys.store.embeddings import EmbeddingMatrix, EmbeddingStore, StoreError

__all__ = ["EmbeddingMatrix", "EmbeddingStore", "StoreError"]
