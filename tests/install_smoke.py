"""Smoke test of an installed irnet_fast (run by tests/install_check.sh from outside the checkout):
the package comes from the installed wheel, the compiled extension loads, the console script
works, and one random walk on every backend present matches the dense reference."""
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

import irnet_fast
from irnet_fast import backends, ops
from irnet_fast.ops import _reference


def main(checkout: str) -> int:
    where = Path(irnet_fast.__file__).resolve()
    assert Path(checkout).resolve() not in where.parents, f"irnet_fast imported from the checkout: {where}"
    assert Path(sys.prefix).resolve() in where.parents, f"irnet_fast not from this venv: {where}"
    assert irnet_fast.HAS_CPP, f"irnet_fast._C did not load: {irnet_fast._ext.LOAD_ERROR}"
    assert list((where.parent / "_kernels").glob("*.h")), "the wheel lacks irnet_fast/_kernels (CuPy sources)"
    script = Path(sys.prefix) / "bin" / "irnet-fast"
    assert "make-sem-seg" in subprocess.run([str(script), "--help"], capture_output=True, text=True,
                                            check=True).stdout
    info = json.loads(subprocess.run([str(script), "info"], capture_output=True, text=True, check=True).stdout)
    assert isinstance(info["extension"], dict), info
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(3, 7, 9, generator=gen, dtype=torch.float64)
    edge = torch.rand(1, 7, 9, generator=gen, dtype=torch.float64)
    expected = _reference.propagate_to_edge(x, edge, 5, 10, 4)
    ran = []
    for name in backends.available_backends():
        device = "cuda" if name in ("cuda", "cupy") else "cpu"
        got = ops.propagate_to_edge(x.to(device), edge.to(device), exp_times=4, backend=name).cpu()
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12)
        ran.append(name)
    assert "cpp" in ran and "torch" in ran, ran
    print(f"install smoke test: irnet_fast {irnet_fast.__version__} from {where.parent}, "
          f"walk matches the reference on {', '.join(ran)}; cwd {os.getcwd()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
