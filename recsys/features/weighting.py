"""How much each modality counts when a video's content features become one vector.

The content features of a video are its modalities' blocks, each z-scored on the catalog and
L2-normalised, then weighted (:func:`modality_weights`) and concatenated. Both the content
baseline every learned model is judged against (``training.baselines``) and the starting point of
a residual model (``recsys.models.fusion``, ``ModelConfig.modality_weights``) take the weights
from here, so the un-learned ranking the product would serve and the model's epoch 0 stay the
same ranking.

Equal weights, except that a hand-made descriptor block beside a pretrained encoder's block
weighs :data:`HANDMADE_BESIDE_PRETRAINED`: on real clips (``shared/data/real-av``) the hand-made
audio descriptors fused at equal weight with EfficientNet-Lite0 frames cost the frames 0.05
precision@5 (0.326 alone, 0.274 fused), while a quarter weight (an audio share of about a fifth
of the fused norm) keeps the frames' precision@5 and adds mAP (0.586 -> 0.605; weights from 0.1
to 0.4 give precision@5 0.319-0.333, mAP 0.591-0.606). Where both blocks are hand-made (the
``content`` extractor) they carry comparable information, as on the synthetic corpus, whose
topics need both modalities: equal weights.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from recsys.choices import Modality
from recsys.features.base import VideoFeatures

#: The weight of a hand-made descriptor block fused with a pretrained encoder's block.
HANDMADE_BESIDE_PRETRAINED = 0.25
#: Version prefixes of the hand-made descriptor encoders (``ContentVisualEncoder``,
#: ``ContentAudioEncoder``), as a composite extractor records them in the features' info.
HANDMADE_VERSION_PREFIXES: Mapping[str, str] = {
    Modality.VISUAL.value: "cv-",
    Modality.AUDIO.value: "ca-",
}
EQUAL: Mapping[str, float] = {m.value: 1.0 for m in Modality}


def modality_weights(features: Sequence[VideoFeatures]) -> dict[str, float]:
    """The weight of each modality's block for features made like ``features[0]``."""
    if not features:
        return dict(EQUAL)
    handmade = {m: _handmade(features[0], m) for m in EQUAL}
    if None in handmade.values() or len(set(handmade.values())) == 1:
        return dict(EQUAL)  # one extractor for both, or both blocks of one kind
    return {m: HANDMADE_BESIDE_PRETRAINED if handmade[m] else 1.0 for m in EQUAL}


def modality_weight(modality: str, weights: Mapping[str, float]) -> float:
    """The weight of ``modality`` in ``weights`` (1 when it is not named)."""
    return float(weights.get(str(modality), 1.0))


def _handmade(features: VideoFeatures, modality: str) -> bool | None:
    """Whether the block comes from a hand-made encoder (None: not a composite's features)."""
    version = features.info.get(f"{modality}_encoder")
    if version is None:
        return None
    return str(version).startswith(HANDMADE_VERSION_PREFIXES[modality])
