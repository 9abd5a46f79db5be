"""The paper's recipe, part two: visual features reduced by a PCA fitted on the catalog.

``pca=N`` in a spec reduces each frame's (clip's) visual row to N dimensions with a
``faiss.PCAMatrix`` fitted on the catalog's cached rows. The matrix is stored under
``$RECSYS_HOME/weights/pca/`` named by the raw visual encoder version and N; its sha256 joins the
extractor version. The cache keeps the raw rows, so fitting again (or another N) never re-runs
the encoder. ``recsys embed --extractor SPEC`` fits it when missing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recsys.features.base import ExtractorUnavailable, FeatureError


def pca_path(weights_dir: Path, visual_version: str, dim: int) -> Path:
    return weights_dir / "pca" / f"{visual_version}-pca{dim}.faiss"


class CatalogPca:
    """A fitted PCA read from its file; :meth:`apply` reduces rows of any leading shape."""

    def __init__(self, path: Path) -> None:
        import faiss

        if not path.is_file():
            raise ExtractorUnavailable(f"PCA file {path} does not exist")
        try:
            self.transform = faiss.read_VectorTransform(str(path))
        except RuntimeError as error:
            raise ExtractorUnavailable(f"PCA file {path} is unreadable ({error})") from None
        self.path = path
        self.d_in = int(self.transform.d_in)
        self.d_out = int(self.transform.d_out)

    def apply(self, rows: np.ndarray) -> np.ndarray:
        flat = np.ascontiguousarray(rows.reshape(rows.shape[0], -1), dtype=np.float32)
        if flat.shape[1] != self.d_in:
            raise FeatureError(
                f"PCA {self.path} takes {self.d_in}-d rows, got {flat.shape[1]}-d; fit it again"
            )
        return np.asarray(self.transform.apply(flat), dtype=np.float32)


def fit_pca(rows: np.ndarray, dim: int, path: Path) -> Path:
    """Fit a PCA to ``dim`` dimensions on ``rows`` and write it atomically to ``path``."""
    import faiss

    flat = np.ascontiguousarray(rows.reshape(rows.shape[0], -1), dtype=np.float32)
    if dim > flat.shape[1]:
        raise ExtractorUnavailable(f"pca={dim} exceeds the encoder's {flat.shape[1]} dimensions")
    if flat.shape[0] < dim:
        raise ExtractorUnavailable(
            f"pca={dim} needs at least {dim} frames in the catalog, found {flat.shape[0]}"
        )
    pca = faiss.PCAMatrix(flat.shape[1], dim)
    pca.train(flat)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    faiss.write_VectorTransform(pca, str(tmp))
    tmp.replace(path)
    return path
