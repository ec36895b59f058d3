"""Float32 precision of the random walk against float64, beside the reference's own float32 walk.

    python -m benchmarks.precision [--sizes 32x40,64x64,94x125] [--reference-dir DIR]
                                   [--reference-max-pixels N] [--out PATH]

Inputs: :func:`benchmarks.cases.walk_inputs` (3 CAM channels, seeded), radius 5, beta 10,
exp_times 8. Truth: irnet_fast's float64 walk with 256 steps (``method="steps"``, float64 weights),
which equals the dense float64 reference to ~1e-13. Each row: max |out - truth| / max |truth|.

- reference float32: ``_reference.propagate_to_edge`` on float32 inputs (dense ``T``, squared 8
  times in float32: what the IRNet code computes). N x N matrices: 94x125 takes ~20 min on one
  core; ``--reference-dir`` keeps its outputs (``ref32_<h>x<w>.npy``) for a later run, and
  ``--reference-max-pixels`` skips it (n/a) above that many pixels unless cached.
- float32 weights: 256 steps with ``A ** beta`` and the normaliser computed in float32 (the
  kernels before the weights moved to float64).
- irnet_fast float32, both methods, ``backend="cpp"`` (default tol).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent


def _rel(a, truth) -> float:
    a = np.asarray(a, dtype=np.float64).reshape(truth.shape)
    return float(np.abs(a - truth).max() / np.abs(truth).max())


def measure(size, reference_dir=None, backend="cpp", reference_max_pixels=None):
    from benchmarks import cases
    from irnet_fast.ops import _dispatch
    from irnet_fast.ops import _reference, random_walk
    from irnet_fast.ops.path_index import geometry_on
    x, edge = cases.walk_inputs(size)
    truth = random_walk(x.double(), edge.double(), 5, 10, 8, backend=backend, method="steps")[0].numpy()
    row = {"size": f"{size[0]}x{size[1]}"}
    cached = Path(reference_dir) / f"ref32_{size[0]}x{size[1]}.npy" if reference_dir else None
    if cached is not None and cached.exists():
        ref32 = np.load(cached)
    elif reference_max_pixels is not None and size[0] * size[1] > reference_max_pixels:
        ref32 = None
    else:
        with torch.no_grad():
            ref32 = _reference.propagate_to_edge(x[0], edge[0], 5, 10, 8).numpy()
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            np.save(cached, ref32)
    row["reference float32 (dense)"] = float("nan") if ref32 is None else _rel(ref32[:, 0], truth)
    # the former kernels: float32 weights, 256 float32 steps
    impl = _dispatch.implementation(backend)
    paths, lengths = geometry_on(5, torch.device("cpu"))
    planes, norm = impl.transition_stencil(edge[:, 0].contiguous(), paths, lengths, 10.0)
    values = (x * (1 - edge)).contiguous()
    old = impl.random_walk(values, planes, torch.reciprocal(norm), paths[:, 0].contiguous(), 256)
    row["float32 weights, 256 steps"] = _rel(old[0].numpy(), truth)
    for method in ("steps", "chebyshev"):
        out = random_walk(x, edge, 5, 10, 8, backend=backend, method=method)
        row[f"irnet_fast float32, {method}"] = _rel(out[0].numpy(), truth)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.precision", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="32x40,64x64,94x125")
    parser.add_argument("--reference-dir", default=None, help="cache of the dense float32 reference outputs")
    parser.add_argument("--reference-max-pixels", type=int, default=None,
                        help="skip the dense reference above this many pixels (n/a) unless cached")
    parser.add_argument("--out", default=str(HERE / "RESULTS_PRECISION.md"))
    args = parser.parse_args(argv)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    rows = []
    for size in sizes:
        rows.append(measure(size, args.reference_dir, reference_max_pixels=args.reference_max_pixels))
        print(rows[-1], flush=True)
    columns = [k for k in rows[0] if k != "size"]
    command = "python -m benchmarks.precision " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = ["# Random walk precision: float32 against float64", "",
             f"Generated {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC by `{command}`.", "",
             __doc__.split("\n\n", 2)[2].strip(), "",
             "max |out - float64| / max |float64| (radius 5, beta 10, exp_times 8, 3 channels):", "",
             "| | " + " | ".join(r["size"] for r in rows) + " |", "|---|" + "---:|" * len(rows)]
    for col in columns:
        lines.append(f"| {col} | " + " | ".join("n/a" if r[col] != r[col] else f"{r[col]:.1e}" for r in rows) + " |")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
