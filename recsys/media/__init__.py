"""Media decoding for stage A: probe, uniform frame sampling by seeking, audio, hashing.

Every failure is a ``MediaError`` subclass whose ``str()`` names the file and the reason.
"""

from recsys.media.decode import (
    DEFAULT_AUDIO_MAX_SECONDS,
    DecodedVideo,
    decode_audio,
    decode_video,
    inspect_video,
    sample_frames,
)
from recsys.media.errors import (
    CorruptMedia,
    DecodeTimeout,
    MediaError,
    MediaNotFound,
    NoVideoStream,
    UnsupportedMedia,
)
from recsys.media.frames import SampledFrames
from recsys.media.hashing import content_hash
from recsys.media.limits import DecodeLimits
from recsys.media.probe import ProbeResult, probe

__all__ = [
    "DEFAULT_AUDIO_MAX_SECONDS",
    "CorruptMedia",
    "DecodeLimits",
    "DecodeTimeout",
    "DecodedVideo",
    "MediaError",
    "MediaNotFound",
    "NoVideoStream",
    "ProbeResult",
    "SampledFrames",
    "UnsupportedMedia",
    "content_hash",
    "decode_audio",
    "decode_video",
    "inspect_video",
    "probe",
    "sample_frames",
]
