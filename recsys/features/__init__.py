"""Stage A: pluggable, versioned content feature extractors and the feature cache."""

from recsys.features.base import (
    ExtractorMismatch,
    ExtractorUnavailable,
    FeatureError,
    FeatureExtractor,
    VideoFeatures,
    pool_sequence,
)
from recsys.features.cache import CacheBatch, FeatureCache
from recsys.features.registry import available_extractors, get_extractor

__all__ = [
    "CacheBatch",
    "ExtractorMismatch",
    "ExtractorUnavailable",
    "FeatureCache",
    "FeatureError",
    "FeatureExtractor",
    "VideoFeatures",
    "available_extractors",
    "get_extractor",
    "pool_sequence",
]
