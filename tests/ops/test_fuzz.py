"""Seeded fuzzing of the public ops on every CPU backend present.

Random shapes (empty, 1x1, odd), strides (non-contiguous views), dtypes and values (NaN, Inf,
out of range, near the float32 maximum) and arguments. Every call must either raise a clear error
(ValueError / TypeError / RuntimeError whose message starts with ``<op>():`` and names one of the
op's arguments) or return what the torch backend returns, finite when the inputs are finite.
The calls run in a worker process, so a crash fails the test instead of killing the test run.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import irnet_fast

# the worker imports the same irnet_fast as this process (the sanitizer build runs a copy)
PACKAGE_ROOT = Path(irnet_fast.__file__).resolve().parents[1]
CALLS = 160  # a few seconds per backend on 2 cores

_WORKER = r'''
import json, math, re, sys, warnings
import numpy as np
import torch
from irnet_fast import backends, ops

warnings.simplefilter("ignore")
rng = np.random.default_rng(int(sys.argv[1]))
count = int(sys.argv[2])
present = [b for b in ("cpp", "numba", "torch") if backends.is_available(b)]

ARGS = {
    "path_affinity": ("edge", "radius", "backend"),
    "transition_stencil": ("edge", "radius", "beta", "backend"),
    "random_walk": ("x", "edge", "radius", "beta", "exp_times", "backend"),
    "propagate_to_edge": ("x", "edge", "radius", "beta", "exp_times", "backend"),
    "find_centroids_with_refinement": ("displacement", "iterations", "backend"),
}

def size():
    return int(rng.choice([0, 1, 1, 2, 3, 5, 7, 12]))

def dtype():
    return [torch.float32, torch.float32, torch.float64, torch.float16, torch.int64][rng.integers(5)]

def values(shape, kind, dt):
    base = torch.from_numpy(rng.random(shape)).to(torch.float64)
    if kind == "signed":
        base = (base - 0.5) * 8
    roll = rng.random()
    if roll < 0.08 and base.numel():
        base.view(-1)[rng.integers(base.numel())] = float(rng.choice([math.nan, math.inf, -math.inf]))
    elif roll < 0.14 and base.numel():
        base.view(-1)[rng.integers(base.numel())] = float(rng.choice([1.5, -0.25]))
    elif roll < 0.2 and kind == "score":
        base = base * 3e38
    t = base.to(dt) if dt.is_floating_point else (base * 10).to(dt)
    if rng.random() < 0.3 and t.dim() >= 2:  # a non-contiguous view with the same values
        t = t.transpose(-1, -2).contiguous().transpose(-1, -2)
    return t

def case():
    op = list(ARGS)[rng.integers(len(ARGS))]
    dt = dtype()
    h, w = size(), size()
    radius = int(rng.choice([1, 2, 3, 5, 5, 0, 70]))
    beta = float(rng.choice([10.0, 10.0, 2.5, 0.0, -1.0, math.nan]))
    exp_times = int(rng.choice([0, 1, 3, 3, 5, -1, 17]))  # 17: past the bound
    if op == "path_affinity":
        return op, dict(edge=values((size(), 1, h, w), "unit", dt), radius=radius)
    if op == "transition_stencil":
        return op, dict(edge=values((size(), 1, h, w), "unit", dt), radius=radius, beta=beta)
    if op == "random_walk":
        b = size()
        return op, dict(x=values((b, size(), h, w), "score", dt), edge=values((b, 1, h, w), "unit", dt),
                        radius=radius, beta=beta, exp_times=exp_times)
    if op == "propagate_to_edge":
        return op, dict(x=values((size(), h, w), "score", dt), edge=values((1, h, w), "unit", dt),
                        radius=radius, beta=beta, exp_times=exp_times)
    return op, dict(displacement=values((2, h, w), "signed", dt), iterations=int(rng.choice([0, 5, 40, -1])))

def finite(v):
    if isinstance(v, (tuple, list)):
        return all(finite(u) for u in v)
    if isinstance(v, torch.Tensor) and v.is_floating_point():
        return bool(torch.isfinite(v).all())
    if isinstance(v, np.ndarray) and v.dtype.kind == "f":
        return bool(np.isfinite(v).all())
    return True

def inputs_finite(kwargs):
    return all(finite(v) for v in kwargs.values() if isinstance(v, torch.Tensor))

def same(a, b):
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(same(u, v) for u, v in zip(a, b))
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if not a.is_floating_point():
        return bool(torch.equal(a, b))
    a, b = a.double(), b.double()
    if not torch.equal(torch.isnan(a), torch.isnan(b)):
        return False
    scale = max(float(b[torch.isfinite(b)].abs().max()) if torch.isfinite(b).any() else 1.0, 1e-30)
    ok = torch.isfinite(a) & torch.isfinite(b)
    return bool(((a[ok] - b[ok]).abs() <= 1e-3 * scale + 1e-6).all()) and torch.equal(a[~ok].nan_to_num(), b[~ok].nan_to_num())

def clear(exc, op):
    text = str(exc)
    if not isinstance(exc, (ValueError, TypeError, RuntimeError)) or not text.startswith(op + "():"):
        return False
    return any(re.search(r"\b" + re.escape(name) + r"\b", text) for name in ARGS[op])

for i in range(count):
    op, kwargs = case()
    results = {}
    for backend in present:
        try:
            results[backend] = ("ok", getattr(ops, op)(**kwargs, backend=backend))
        except Exception as exc:
            results[backend] = ("error", exc)
    problems = []
    for backend, (kind, value) in results.items():
        if kind == "error":
            if not clear(value, op):
                problems.append(f"{backend}: unclear error {type(value).__name__}: {str(value)[:200]}")
        else:
            if inputs_finite(kwargs) and not finite(value):
                problems.append(f"{backend}: non-finite output from finite input")
            ref_kind, ref = results.get("torch", (None, None))
            if ref_kind == "ok" and backend != "torch" and not same(value, ref):
                problems.append(f"{backend}: differs from the torch backend")
    kinds = {k for k, _ in results.values()}
    if len(kinds) > 1:
        problems.append("backends disagree on accepting the call: " + ", ".join(f"{b}={k}" for b, (k, _) in results.items()))
    desc = {k: (f"tensor{tuple(v.shape)} {v.dtype} contiguous={v.is_contiguous()}" if isinstance(v, torch.Tensor) else v)
            for k, v in kwargs.items()}
    print(json.dumps({"i": i, "op": op, "args": desc, "problems": problems}, default=str), flush=True)
'''


@pytest.mark.parametrize("seed", [0, 1])
def test_fuzz_public_ops(seed):
    env = dict(os.environ, PYTHONPATH=str(PACKAGE_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", _WORKER, str(seed), str(CALLS)], capture_output=True, text=True,
                          env=env, timeout=900)
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 0 and len(records) == CALLS, (
        f"worker exit {proc.returncode} after {len(records)} calls (last: {records[-1:]}): {proc.stderr[-3000:]}")
    bad = [r for r in records if r["problems"]]
    assert not bad, "\n".join(f"{r['op']}({r['args']}): {'; '.join(r['problems'])}" for r in bad[:15])
