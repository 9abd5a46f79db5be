"""Audio encoders: hand-made descriptors, VGGish (the paper's) and PANNs CNN14.

Each takes mono float audio at whatever rate it was decoded and resamples it to its own rate
(``librosa.resample``). Audio too short for one network input is an error naming the length.
Each declares itself (name, version, factory, weights) with
:func:`~.encoder_registry.register_encoder`; ``none`` declares "no audio encoder".
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recsys.choices import Modality
from recsys.features.base import ExtractorUnavailable, FeatureError
from recsys.features.checkpoints import load_strict, read_state_dict
from recsys.features.content_audio import audio_descriptors
from recsys.features.encoder import Encoded, Encoder, resolve_weights
from recsys.features.encoder_registry import EncoderType, register_encoder
from recsys.settings import Settings
from recsys.weights.registry import WeightsEntry

#: One audio input: mono samples and their rate.
Audio = tuple[np.ndarray, int]
PANNS_WINDOW_S = 2.0


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    samples = np.asarray(samples, dtype=np.float32).reshape(-1)
    if rate == target:
        return samples
    import librosa

    return librosa.resample(samples, orig_sr=rate, target_sr=target).astype(np.float32)


class ContentAudioEncoder(Encoder):
    modality = Modality.AUDIO
    name = "content"
    deep = False

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.sample_rate = settings.audio_sample_rate
        self.version = f"ca-{CONTENT.version}"

    def encode(self, items: Sequence[Audio]) -> list[Encoded]:  # type: ignore[override]
        out: list[Encoded] = []
        for samples, rate in items:
            try:
                out.append(
                    audio_descriptors(resample(samples, rate, self.sample_rate), self.sample_rate)
                )
            except FeatureError as error:
                out.append(error)
        return out


class VggishEncoder(Encoder):
    modality = Modality.AUDIO
    chunk = 64
    dim = 128

    def __init__(
        self, settings: Settings, postprocess: bool = False, weights_path: Path | None = None
    ) -> None:
        super().__init__()
        from recsys.features import vggish

        self.name = VGGISH.name(PCA if postprocess else "")
        self.sample_rate = vggish.SAMPLE_RATE
        self.weights_path, digest = resolve_weights(
            settings, self.name, VGGISH_WEIGHTS, VGGISH_WEIGHTS, weights_path
        )
        self.version = f"vggish-{VGGISH.version}-{digest[:12]}"
        self.pca_path: Path | None = None
        if postprocess:
            self.pca_path, pca_digest = resolve_weights(
                settings, "vggish PCA parameters", VGGISH_PCA_WEIGHTS, VGGISH_PCA_WEIGHTS, None
            )
            self.version += f"-pca{pca_digest[:8]}"

    def _pca(self) -> tuple[np.ndarray, np.ndarray]:
        assert self.pca_path is not None
        try:
            if self.pca_path.suffix == ".npz":
                with np.load(self.pca_path, allow_pickle=False) as data:
                    return data["pca_eigen_vectors"], data["pca_means"]
            state = read_state_dict(self.pca_path)
            return state["pca_eigen_vectors"].numpy(), state["pca_means"].numpy()
        except (KeyError, OSError, ValueError) as error:
            raise ExtractorUnavailable(
                f"VGGish PCA file {self.pca_path} lacks pca_eigen_vectors/pca_means ({error})"
            ) from None

    def build(self) -> Any:
        import torch

        from recsys.features.vggish import Vggish, VggishPostprocess

        model = Vggish()
        assert self.weights_path is not None
        load_strict(model, read_state_dict(self.weights_path), self.weights_path, "VGGish")
        if self.pca_path is not None:
            return torch.nn.Sequential(model, VggishPostprocess(*self._pca()))
        return model

    def patches(self, samples: np.ndarray, rate: int) -> Any:
        import torch

        from recsys.features.vggish import VggishFrontEnd

        waveform = torch.from_numpy(resample(samples, rate, self.sample_rate))
        try:
            return VggishFrontEnd()(waveform)
        except ValueError as error:
            raise FeatureError(str(error)) from None

    def encode(self, items: Sequence[Audio]) -> list[Encoded]:  # type: ignore[override]
        return self.encode_prepared(items, lambda item: self.patches(*item), self.model())


class PannsEncoder(Encoder):
    modality = Modality.AUDIO
    chunk = 8
    dim = 2048

    def __init__(self, settings: Settings, weights_path: Path | None = None) -> None:
        super().__init__()
        from recsys.features import panns

        self.name = PANNS.name("cnn14")
        self.sample_rate = panns.SAMPLE_RATE
        self.weights_path, digest = resolve_weights(
            settings, self.name, PANNS_WEIGHTS, PANNS_WEIGHTS, weights_path
        )
        self.version = f"panns-cnn14-{PANNS.version}-w{PANNS_WINDOW_S:g}-{digest[:12]}"

    def build(self) -> Any:
        from recsys.features.panns import Cnn14

        model = Cnn14()
        assert self.weights_path is not None
        load_strict(model, read_state_dict(self.weights_path), self.weights_path, "PANNs CNN14")
        return model

    def windows(self, samples: np.ndarray, rate: int) -> list[np.ndarray]:
        """Whole windows of PANNS_WINDOW_S; audio shorter than one is a single shorter window."""
        from recsys.features.panns import MIN_SAMPLES

        y = resample(samples, rate, self.sample_rate)
        if len(y) < MIN_SAMPLES:
            raise FeatureError(
                f"{len(y) / self.sample_rate:.2f} s of audio is shorter than one CNN14 input "
                f"({MIN_SAMPLES / self.sample_rate:.2f} s)"
            )
        width = int(PANNS_WINDOW_S * self.sample_rate)
        if len(y) < width:
            return [y]
        return [y[i * width : (i + 1) * width] for i in range(len(y) // width)]

    def encode(self, items: Sequence[Audio]) -> list[Encoded]:  # type: ignore[override]
        import torch

        model = self.model()
        windows: list[list[np.ndarray]] = []
        errors: list[FeatureError | None] = []
        for samples, rate in items:
            try:
                windows.append(self.windows(samples, rate))
                errors.append(None)
            except FeatureError as error:
                windows.append([])
                errors.append(error)
        # Windows of equal length go through the network together, whichever video they are from.
        by_length: dict[int, list[tuple[int, int]]] = {}
        for i, parts in enumerate(windows):
            for j, part in enumerate(parts):
                by_length.setdefault(len(part), []).append((i, j))
        rows: dict[tuple[int, int], np.ndarray] = {}
        for _length, keys in by_length.items():
            batch = torch.from_numpy(np.stack([windows[i][j] for i, j in keys]))
            for key, row in zip(keys, self.run_chunks(model, batch), strict=True):
                rows[key] = row
        out: list[Encoded] = []
        for i, failure in enumerate(errors):
            out.append(
                failure
                if failure is not None
                else np.stack([rows[(i, j)] for j in range(len(windows[i]))])
            )
        return out


VGGISH_WEIGHTS, VGGISH_PCA_WEIGHTS, PANNS_WEIGHTS = "vggish", "vggish-pca", "panns-cnn14"
PCA = "pca"  # the ``vggish:pca`` variant: the released PCA/whitening + 8-bit quantisation


def _vggish_weights() -> list[WeightsEntry]:
    return [
        WeightsEntry(
            name=VGGISH_WEIGHTS,
            encoder=VGGISH.component(),
            url="https://github.com/harritaylor/torchvggish/releases/download/v0.1/"
            "vggish-10086976.pth",
            filename=f"{VGGISH_WEIGHTS}.pth",
            licence="Apache-2.0 (AudioSet VGGish, tensorflow/models; PyTorch port by harritaylor)",
            sha256_prefix="10086976",
            approx_mb=277.0,
        ),
        WeightsEntry(
            name=VGGISH_PCA_WEIGHTS,
            encoder=VGGISH.component(PCA),
            url="https://storage.googleapis.com/audioset/vggish_pca_params.npz",
            filename=f"{VGGISH_PCA_WEIGHTS}.npz",
            licence="Apache-2.0 (AudioSet VGGish, tensorflow/models)",
            approx_mb=0.07,
            note="PCA/whitening + 8-bit quantisation of the released AudioSet embeddings",
        ),
    ]


def _panns_weights() -> list[WeightsEntry]:
    return [
        WeightsEntry(
            name=PANNS_WEIGHTS,
            encoder="",
            url="https://zenodo.org/record/3987831/files/Cnn14_mAP%3D0.431.pth",
            filename=f"{PANNS_WEIGHTS}.pth",
            licence="CC-BY-4.0 (PANNs, Kong et al.; code MIT)",
            approx_mb=327.0,
        )
    ]


CONTENT: EncoderType = register_encoder(
    EncoderType(
        "content",
        Modality.AUDIO,
        "4",
        lambda settings, _variant, _options, _weights: ContentAudioEncoder(settings),
        summary="spectral descriptors of ~1 s windows (no weights)",
    )
)
VGGISH: EncoderType = register_encoder(
    EncoderType(
        "vggish",
        Modality.AUDIO,
        "1",
        lambda settings, variant, _options, _weights: VggishEncoder(settings, variant == PCA),
        variants=("", PCA),
        weights=_vggish_weights,
        summary="AudioSet VGGish (the paper's audio network), 128-d per 0.96 s",
    )
)
PANNS: EncoderType = register_encoder(
    EncoderType(
        "panns",
        Modality.AUDIO,
        "1",
        lambda settings, _variant, _options, _weights: PannsEncoder(settings),
        variants=("cnn14",),
        weights=_panns_weights,
        summary="AudioSet PANNs CNN14, 2048-d per 2 s window",
    )
)
NONE: EncoderType = register_encoder(
    EncoderType(
        "none",
        Modality.AUDIO,
        "1",
        lambda _settings, _variant, _options, _weights: None,
        summary="no audio features",
    )
)
