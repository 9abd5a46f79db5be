"""The ``content`` extractor: hand-made visual and audio descriptors that need no weights.

Per sampled frame: HSV colour histograms and colour moments (what it looks like), a
gradient-orientation histogram (texture and edges), coarse grid means (layout) and the frame
difference to the next sample (motion). Per ~1 s audio window: log-mel statistics, MFCC, spectral
contrast, loudness/brightness and onset/rhythm descriptors.

Stage A must stay decode-bound, so everything is computed at once over all frames (lookup tables
for integer colour bins and for the orientation and magnitude of integer grey gradients, no
per-pixel trigonometry) and over one STFT of the whole clip, from which every audio descriptor
is derived. The visual half lives in :mod:`recsys.features.content_visual`, the audio half in
:mod:`recsys.features.content_audio`; this module combines them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from recsys.features.base import VideoFeatures
from recsys.features.content_audio import audio_descriptors, audio_sequence
from recsys.features.content_visual import visual_descriptors

if TYPE_CHECKING:
    from recsys.media import DecodedVideo

__all__ = ["ContentExtractor", "audio_descriptors", "audio_sequence", "visual_descriptors"]


class ContentExtractor:
    """Hand-made colour/texture/layout/motion and log-mel/MFCC/contrast/rhythm descriptors."""

    name = "content"
    version = "content-4"

    def extract(self, decoded: DecodedVideo) -> VideoFeatures:
        return VideoFeatures.from_sequences(
            self.name,
            self.version,
            visual_descriptors(decoded.frames),
            audio_sequence(decoded),
        )
