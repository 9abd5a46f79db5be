"""The feature cache: stage-A output per (content hash, extractor name + version).

Retraining and re-embedding read features from here and never re-decode. One concept per
module: where the files lie (:mod:`.layout`, with the database-free lookup of stage-A workers),
the pack file format (:mod:`.packs`), reading (:mod:`.reader`), writing (:mod:`.writer`) and
compaction (:mod:`.compaction`); :class:`FeatureCache` is all of them for one home.
"""

from recsys.features.cache.compaction import CacheCompaction, CacheCompactor
from recsys.features.cache.feature_cache import FeatureCache
from recsys.features.cache.layout import cached_parts, entry_path, find_part_on_disk, key_dir
from recsys.features.cache.reader import CacheReader
from recsys.features.cache.writer import CacheBatch, CacheRecord, CacheWriter

__all__ = [
    "CacheBatch",
    "CacheCompaction",
    "CacheCompactor",
    "CacheReader",
    "CacheRecord",
    "CacheWriter",
    "FeatureCache",
    "cached_parts",
    "entry_path",
    "find_part_on_disk",
    "key_dir",
]
