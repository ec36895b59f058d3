"""The dense CRF of IRNet's IR labels (docs/algorithm.md, "Training"), through pydensecrf2.

``pydensecrf2`` (PyPI; import name ``pydensecrf``) is an optional extra: ``pip install
'irnet_fast[crf]'``. The original ``pydensecrf`` does not build with Cython 3.
"""
from __future__ import annotations

import numpy as np

from .errors import MissingDependencyError

__all__ = ["crf_available", "crf_inference_label", "CRFUnavailableError", "CRF_INSTALL_HINT"]

CRF_INSTALL_HINT = ("the dense CRF needs pydensecrf2: pip install 'irnet_fast[crf]' (or pip install pydensecrf2); "
            "or set crf = false in the config to skip it (IR labels then differ from the paper's)")


class CRFUnavailableError(MissingDependencyError):
    pass


def crf_available() -> bool:
    try:
        import pydensecrf.densecrf  # noqa: F401
        return True
    except ImportError:
        return False


def crf_inference_label(image: np.ndarray, labels: np.ndarray, n_labels: int, iterations: int = 10,
                        gt_prob: float = 0.7) -> np.ndarray:
    """Refines a label map with a fully connected CRF (the reference's ``crf_inference_label``).

    Unary from the labels (ground-truth probability ``gt_prob``), a Gaussian kernel (sxy 3,
    compat 3) and a bilateral kernel (sxy 50, srgb 5, compat 10) on the RGB image, ``iterations``
    mean-field steps. Returns the argmax ``int64 (H, W)``.
    """
    try:
        import pydensecrf.densecrf as dcrf
        from pydensecrf.utils import unary_from_labels
    except ImportError as exc:
        raise CRFUnavailableError(CRF_INSTALL_HINT) from exc
    image = np.asarray(image)
    labels = np.asarray(labels)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"crf_inference_label(): image expected uint8 (H, W, 3), got {image.dtype} {image.shape}")
    if labels.shape != image.shape[:2]:
        raise ValueError(f"crf_inference_label(): labels expected shape {image.shape[:2]}, got {labels.shape}")
    if n_labels < 1 or (labels.size and (labels.min() < 0 or labels.max() >= n_labels)):
        raise ValueError(f"crf_inference_label(): labels must be in 0..{n_labels - 1}")
    height, width = labels.shape
    crf = dcrf.DenseCRF2D(width, height, n_labels)
    crf.setUnaryEnergy(unary_from_labels(labels, n_labels, gt_prob=gt_prob, zero_unsure=False))
    crf.addPairwiseGaussian(sxy=3, compat=3)
    crf.addPairwiseBilateral(sxy=50, srgb=5, rgbim=np.array(image, order="C", copy=True), compat=10)  # needs a writable buffer
    q = crf.inference(iterations)
    return np.argmax(np.array(q).reshape((n_labels, height, width)), axis=0)
