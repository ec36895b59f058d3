"""Chebyshev evaluation of a walk power ``P ** n`` in about ``sqrt(n)`` passes (docs/chebyshev.md).

The walk operator ``P = D^-1 A`` (``A`` symmetric, non-negative, ``D`` its row sums) is similar to
``S = D^-1/2 A D^-1/2``, whose spectrum lies in [-1, 1]. The monomial has the exact expansion

    l ** n = sum_{k <= n, k = n mod 2} c_k T_k(l),   c_k = 2 ** (1 - n) * C(n, (n - k) / 2)

(``c_0`` halved). The ``c_k`` are a binomial distribution folded at 0: they sum to 1 and their
tail beyond degree ``d`` is about ``2 exp(-d**2 / 2n)``, so ``d`` of order ``sqrt(n)`` passes of the
three-term recurrence ``v_{k+1} = 2 P v_k - v_{k-1}`` replace ``n`` plain steps.
"""
from __future__ import annotations

import math
import numbers
from typing import Callable

import numpy as np

__all__ = ["chebyshev_coefficients", "chebyshev_walk", "DEFAULT_TOL"]

#: Default truncation bounds per dtype: below float32 rounding noise of 256 steps, and near
#: float64 rounding for float64 inputs.
DEFAULT_TOL = {"float32": 1e-5, "float64": 1e-12}


def _check(n, tol, spread, op: str):
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
        raise ValueError(f"{op}(): n expected an integer >= 0, got {n!r}")
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not (0 <= float(tol) < math.inf):
        raise ValueError(f"{op}(): tol expected a finite number >= 0, got {tol!r}")
    if isinstance(spread, bool) or not isinstance(spread, numbers.Real) or not (1 <= float(spread) < math.inf):
        raise ValueError(f"{op}(): spread expected a finite number >= 1 (max d / min d), got {spread!r}")


def chebyshev_coefficients(n: int, tol: float = 1e-5, *, spread: float = 1.0) -> np.ndarray:
    r"""Coefficients ``c_0 .. c_d`` of the truncated Chebyshev expansion of ``l ** n`` on [-1, 1].

    ``P ** n x`` is then ``sum_k c_k v_k`` with ``v_0 = x``, ``v_1 = P x``,
    ``v_{k+1} = 2 P v_k - v_{k-1}``: ``d`` applications of ``P`` instead of ``n``.

    Error bound. For ``P = D^-1 A`` with ``A`` symmetric and non-negative (a random-walk
    transition in either orientation), ``P ** n = D^-1/2 S ** n D^1/2`` with ``||S||_2 <= 1`` and
    ``|T_k| <= 1`` on [-1, 1], so the dropped terms change the result ``y`` by at most
    ``||dy||_2 <= sqrt(spread) * tail * ||x||_2`` with ``tail = sum_{k > d} c_k`` and
    ``spread = max(D) / min(D)``. The degree is the smallest ``d`` with
    ``sqrt(spread) * tail <= tol``; it grows as ``tol`` falls (never shrinks) and as
    ``sqrt(n log(1 / tol))``.

    The binomials are taken in log space in float64 (``n = 2 ** 12`` and beyond do not overflow).
    Terms below ``exp(-750)`` of the largest are not formed (they are 0 in float64).
    Where the bound needs every term, the exact expansion (``d = n``) comes back: it costs as many
    passes as ``n`` plain steps, so apply ``P`` ``n`` times instead (``random_walk`` does).

    Args:
        n (int): the power, >= 0 (``2 ** exp_times`` for IRNet's walk).
        tol (float): bound on ``||dy||_2 / ||x||_2``, >= 0 (0 keeps every term).
        spread (float): ``max(D) / min(D)`` of the operator's degrees, >= 1 (1 for a symmetric
            ``P``; IRNet's walk has ``D`` in [1, 1 + 2 * num_dirs]).

    Returns:
        float64 array of length ``d + 1``; entries of the other parity than ``n`` are 0.

    Example (SciPy):
        >>> c = chebyshev_coefficients(256, 1e-6, spread=69)
        >>> y = chebyshev_walk(lambda v: trans_t @ v, y0, c)   # == matrix_power(trans_t, 256) @ y0
    """
    _check(n, tol, spread, "chebyshev_coefficients")
    n = int(n)
    # the degrees present; beyond sqrt(2 n 750) the terms are below exp(-750), zero in float64
    k = np.arange(n % 2, min(n, int(math.sqrt(2.0 * n * 750.0)) + 2) + 1, 2)
    j = (n - k) // 2
    # log C(n, j) relative to the centre, from C(n, j - 1) / C(n, j) = j / (n - j + 1)
    steps = np.log(j[:-1].astype(np.float64)) - np.log((n - j[:-1] + 1).astype(np.float64))
    log_binom = np.concatenate([[0.0], np.cumsum(steps)])
    c = np.exp(log_binom - log_binom.max())  # the factor 2 ** (1 - n) goes in the normalisation
    if n % 2 == 0:
        c[0] *= 0.5  # c_0 counts T_0 once
    c /= c.sum()  # l ** n is 1 at l = 1 and T_k(1) = 1: the coefficients sum to 1 exactly
    # tail[i] = sum of c over the degrees above k[i] (summed from the smallest terms up)
    tail = np.concatenate([np.cumsum(c[::-1])[::-1][1:], [0.0]])
    allowed = float(tol) / math.sqrt(float(spread))
    degree = int(k[int(np.argmax(tail <= allowed))])  # tail is non-increasing and ends with 0
    coefficients = np.zeros(degree + 1, dtype=np.float64)
    keep = k <= degree
    coefficients[k[keep]] = c[keep]
    return coefficients


def chebyshev_walk(apply: Callable, x, coefficients):
    """``sum_k c_k T_k(P) x`` by the three-term recurrence, with ``apply(v) = P v``.

    Works with anything that supports ``+``, ``-`` and scalar ``*`` (tensors, NumPy arrays); makes
    ``len(coefficients) - 1`` calls of ``apply``. The fused kernels of ``random_walk`` do the same
    in one pass per degree.
    """
    coefficients = [float(c) for c in np.asarray(coefficients, dtype=np.float64).reshape(-1)]
    if not coefficients:
        raise ValueError("chebyshev_walk(): coefficients expected at least one value, got none")
    previous, current = x, None
    result = x * coefficients[0]
    for k in range(1, len(coefficients)):
        nxt = apply(previous) if k == 1 else 2 * apply(current) - previous
        if k > 1:
            previous = current
        current = nxt
        if coefficients[k] != 0.0:
            result = result + current * coefficients[k]
    return result
