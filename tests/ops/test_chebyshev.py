"""chebyshev_coefficients against exact rational arithmetic, and chebyshev_walk against powers."""
import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from irnet_fast.ops import chebyshev_coefficients, chebyshev_walk


def exact_coefficients(n):
    """l ** n = sum_k c_k T_k(l), from the expansion of ((z + 1/z) / 2) ** n, in Fractions."""
    c = [Fraction(0)] * (n + 1)
    for j in range(n + 1):  # z ** (n - 2j) with weight C(n, j) / 2 ** n; T_k = (z^k + z^-k) / 2
        k = abs(n - 2 * j)
        c[k] += Fraction(math.comb(n, j), 2 ** n)
    return c


def chebyshev_t(k, lam):
    t0, t1 = Fraction(1), lam
    if k == 0:
        return t0
    for _ in range(k - 1):
        t0, t1 = t1, 2 * lam * t1 - t0
    return t1


@pytest.mark.parametrize("n", range(0, 13))
def test_exact_expansion_matches_fractions(n):
    exact = exact_coefficients(n)
    # the exact coefficients reproduce l ** n at rational points: the test's own check
    for lam in (Fraction(-1), Fraction(-2, 3), Fraction(1, 7), Fraction(1)):
        assert sum(c * chebyshev_t(k, lam) for k, c in enumerate(exact)) == lam ** n
    got = chebyshev_coefficients(n, 0.0)
    assert got.dtype == np.float64 and len(got) == n + 1
    for k in range(n + 1):
        assert got[k] == pytest.approx(float(exact[k]), rel=1e-14, abs=0.0)


@pytest.mark.parametrize("n", [5, 8, 12, 16, 30])
@pytest.mark.parametrize("tol,spread", [(1e-1, 1.0), (1e-3, 1.0), (1e-3, 69.0), (1e-6, 9.0)])
def test_degree_is_the_smallest_that_meets_the_bound(n, tol, spread):
    exact = exact_coefficients(n)
    got = chebyshev_coefficients(n, tol, spread=spread)
    degree = len(got) - 1
    tail = lambda d: float(sum(exact[d + 1:]))  # noqa: E731
    assert tail(degree) * math.sqrt(spread) <= tol * (1 + 1e-12)
    smaller = [d for d in range(degree) if exact[d] != 0]
    if smaller:  # one term fewer breaks the bound
        assert tail(smaller[-1]) * math.sqrt(spread) > tol
    for k in range(degree + 1):
        assert got[k] == pytest.approx(float(exact[k]), rel=1e-13, abs=0.0)


def test_degree_monotone_in_tol_and_large_n():
    for n in (7, 64, 256, 4096):
        degrees = [len(chebyshev_coefficients(n, tol, spread=69)) - 1 for tol in np.logspace(-14, 0, 40)]
        assert all(a >= b for a, b in zip(degrees, degrees[1:]))
        assert degrees[0] <= n
    c = chebyshev_coefficients(2 ** 12, 1e-6, spread=69)
    assert np.isfinite(c).all() and 0 < len(c) - 1 < 400 and abs(c.sum() - 1) < 1e-6
    assert len(chebyshev_coefficients(256, 1e-5, spread=69)) - 1 < 90  # 78: the saving the walk relies on


def test_no_saving_returns_the_exact_expansion():
    for n in (0, 1, 2, 4):
        assert len(chebyshev_coefficients(n, 1e-5, spread=69)) == n + 1


def test_chebyshev_walk_matches_matrix_power():
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(30, 30, generator=gen, dtype=torch.float64)
    a = a + a.T + torch.eye(30)
    p = a / a.sum(1, keepdim=True)  # D^-1 A
    x = torch.rand(30, 2, generator=gen, dtype=torch.float64)
    spread = float(a.sum(1).max() / a.sum(1).min())
    for n, tol in ((64, 1e-10), (17, 1e-6), (3, 1e-3)):
        expected = torch.linalg.matrix_power(p, n) @ x
        got = chebyshev_walk(lambda v: p @ v, x, chebyshev_coefficients(n, tol, spread=spread))
        assert float((got - expected).norm()) <= tol * float(x.norm())


@pytest.mark.parametrize("args,match", [((-1, 1e-3), "n expected"), ((2.5, 1e-3), "n expected"),
                                        ((4, -1.0), "tol expected"), ((4, float("nan")), "tol expected")])
def test_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        chebyshev_coefficients(*args)
    with pytest.raises(ValueError, match="spread expected"):
        chebyshev_coefficients(4, 1e-3, spread=0.5)
    with pytest.raises(ValueError, match="coefficients expected"):
        chebyshev_walk(lambda v: v, torch.ones(2), [])
