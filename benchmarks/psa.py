"""AffinityNet's family on the walk engine against its dense formulation, side by side in one run.

    python -m benchmarks.psa            # the three comparisons below, one subprocess per case
    python -m benchmarks.psa --quick    # small sizes (a smoke run)

* walk: ``compat.psa.propagate`` (64x64 feature grid, 21 channels, logt 8, beta 8) against
  ``cam @ T ** 256`` of AffinityNet's dense formulation (``_reference.psa_propagate``), with the
  label agreement (arg-max over channels) and ``max |diff| / max``;
* feature_affinity forward + backward (B=8, 56x56 = a 448 crop at stride 8, 448 channels) against
  the index_select formulation of AffinityNet's head (``_reference.psa_affinity``);
* the walk's backward against its forward (gradients for the CAMs and the features).

Each case runs in a fresh process: peak MB = ``ru_maxrss`` after the runs minus before (inputs
built). Times are medians.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _timed(fn, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def _walk_inputs(size, channels, seed=0):
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(1, 32, size, size, generator=gen)
    features = torch.nn.functional.avg_pool2d(features, 5, 1, 2) * 4
    cam = torch.rand(channels, size, size, generator=gen) ** 3
    return cam, features


def case(name: str, quick: bool) -> dict:
    from irnet_fast.compat import psa
    from irnet_fast.ops import _reference, feature_affinity

    size, channels = (32, 21) if quick else (64, 21)
    batch, grid, feat = (2, 24, 64) if quick else (8, 56, 448)
    if name in ("walk_fast", "walk_dense"):
        cam, features = _walk_inputs(size, channels)
        fn = ((lambda: psa.propagate(cam, features, beta=8, logt=8)) if name == "walk_fast"
              else (lambda: _reference.psa_propagate(cam, features, beta=8, logt=8)))
        base = _rss_mb()
        with torch.no_grad():
            seconds, out = _timed(fn, 1 if name == "walk_dense" else 5)
        torch.save(out, f"/tmp/psa_bench_{name}.pt")
        return {"seconds": seconds, "peak_mb": _rss_mb() - base}
    if name in ("affinity_fast", "affinity_index_select"):
        gen = torch.Generator().manual_seed(1)
        features = torch.randn(batch, feat, grid, grid, generator=gen).requires_grad_()
        forward = ((lambda f: psa.affinity(f)) if name == "affinity_fast" else (lambda f: _reference.psa_affinity(f)))

        def run():
            features.grad = None
            aff = forward(features)
            aff.sum().backward()
            return aff
        run()  # warm-up (numba / allocator)
        from benchmarks.report import _reset_peak_rss
        _reset_peak_rss()  # the warm-up's high-water mark must not hide the timed runs'
        base = _rss_mb()
        seconds, _ = _timed(run, 3)
        return {"seconds": seconds, "peak_mb": _rss_mb() - base}
    if name == "walk_backward":
        cam, features = _walk_inputs(size, channels)
        cam.requires_grad_()
        features.requires_grad_()
        with torch.no_grad():
            fwd, _ = _timed(lambda: psa.propagate(cam, features, beta=8, logt=8), 3)
        grad_fwd, out = _timed(lambda: psa.propagate(cam, features, beta=8, logt=8), 3)
        bwd, _ = _timed(lambda: torch.autograd.grad(out, (cam, features), torch.ones_like(out), retain_graph=True), 3)
        cam_only = cam.detach().requires_grad_()
        fixed = features.detach()
        fwd_x, out_x = _timed(lambda: psa.propagate(cam_only, fixed, beta=8, logt=8), 3)
        bwd_x, _ = _timed(lambda: torch.autograd.grad(out_x, cam_only, torch.ones_like(out_x), retain_graph=True), 3)
        return {"forward_no_grad": fwd, "forward_with_states": grad_fwd, "backward": bwd,
                "forward_x_only": fwd_x, "backward_x_only": bwd_x}
    raise ValueError(name)


CASES = ("walk_fast", "walk_dense", "affinity_fast", "affinity_index_select", "walk_backward")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--case")
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(case(args.case, args.quick)))
        return
    results = {}
    for name in CASES:
        cmd = [sys.executable, "-m", "benchmarks.psa", "--case", name] + (["--quick"] if args.quick else [])
        results[name] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()
                                   .splitlines()[-1])
        print(name, results[name], flush=True)
    fast, dense = torch.load("/tmp/psa_bench_walk_fast.pt"), torch.load("/tmp/psa_bench_walk_dense.pt")
    equal = float((fast.argmax(0) == dense.argmax(0)).double().mean())
    diff = float((fast.double() - dense.double()).abs().max() / dense.double().abs().max())
    w, a, b = results["walk_fast"], results["affinity_fast"], results["walk_backward"]
    print(f"walk: {results['walk_dense']['seconds'] / w['seconds']:.0f}x faster than dense "
          f"({w['seconds'] * 1e3:.1f} ms vs {results['walk_dense']['seconds']:.2f} s; peak {w['peak_mb']:.0f} MB vs "
          f"{results['walk_dense']['peak_mb']:.0f} MB), labels equal {100 * equal:.3f}%, max diff / max {diff:.2e}")
    ref = results["affinity_index_select"]
    print(f"feature_affinity fwd+bwd: {ref['seconds'] / a['seconds']:.1f}x faster ({a['seconds'] * 1e3:.0f} ms vs "
          f"{ref['seconds'] * 1e3:.0f} ms), {ref['peak_mb'] / max(a['peak_mb'], 1e-3):.1f}x less memory "
          f"({a['peak_mb']:.0f} MB vs {ref['peak_mb']:.0f} MB)")
    print(f"walk backward / forward: all inputs {b['backward'] / b['forward_with_states']:.2f} (of the forward "
          f"keeping states; {b['backward'] / b['forward_no_grad']:.2f} of the fused forward), CAMs only "
          f"{b['backward_x_only'] / b['forward_x_only']:.2f}")


if __name__ == "__main__":
    main()
