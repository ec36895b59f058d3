"""Seeded realistic inputs and the backend parametrisation shared by the op tests."""
import pytest
import torch
import torch.nn.functional as F

from irnet_fast import backends

needs_ext = pytest.mark.skipif(not backends.is_available("cpp"), reason="irnet_fast._C not built")
needs_numba = pytest.mark.skipif(not backends.is_available("numba"), reason="numba not installed")

# (backend, device): every backend is checked against the same dense reference
BACKENDS = [
    pytest.param("torch", "cpu", id="torch"),
    pytest.param("numba", "cpu", marks=needs_numba, id="numba"),
    pytest.param("cpp", "cpu", marks=needs_ext, id="cpp"),
    pytest.param("cuda", "cuda", marks=[needs_ext, pytest.mark.needs_cuda], id="cuda"),
    pytest.param("cupy", "cuda", marks=[pytest.mark.needs_cupy], id="cupy"),
    pytest.param("torch", "cuda", marks=[pytest.mark.needs_cuda], id="torch-cuda"),
]


def boundary_map(batch, height, width, *, seed=0, dtype=torch.float64):
    """Smoothed noise through a sigmoid: blobs of boundary in (0, 1), like IRNet's output."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(batch, 1, height, width, generator=gen, dtype=torch.float64)
    noise = F.avg_pool2d(noise, 5, stride=1, padding=2, count_include_pad=False)
    return torch.sigmoid(6 * noise).to(dtype)


def cams(batch, channels, height, width, *, seed=1, dtype=torch.float64):
    """Non-negative smooth scores normalised to max 1 per channel, like CAMs."""
    gen = torch.Generator().manual_seed(seed)
    raw = torch.rand(batch, channels, height, width, generator=gen, dtype=torch.float64) ** 3
    raw = F.avg_pool2d(raw, 3, stride=1, padding=1, count_include_pad=False)
    return (raw / raw.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-12)).to(dtype)
