import pytest
import torch

from irnet_fast import backends


def pytest_collection_modifyitems(config, items):
    skip_cuda = pytest.mark.skip(reason="needs a CUDA GPU")
    skip_cupy = pytest.mark.skip(reason="needs CuPy with a GPU")
    for item in items:
        if "needs_cuda" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_cuda)
        if "needs_cupy" in item.keywords and not backends.is_available("cupy"):
            item.add_marker(skip_cupy)
