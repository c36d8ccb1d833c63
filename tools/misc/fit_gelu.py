"""Fit the polynomial of the fused FFN kernel's GELU (``_gelu`` in
``tinyvim_mm/ops/ffn/kernels.py``) and report its float32 error.

The kernel computes ``GELU(x) = x * Phi(x) = max(x, 0) - |x| * Q(|x|)`` from the normal
tail probability ``Q(t) = P(N(0, 1) > t) = 2 ** -s(t)``, ``t = min(|x|, T)``, with ``s`` a
polynomial; this script fits ``s`` by Lawson's iteration toward the minimax of the GELU's
absolute error (``dGELU / ds = |x| Q ln 2``) on Chebyshev nodes of ``[0, T]``.

Example::

    python tools/misc/fit_gelu.py               # degree 6, T = 6: the kernel's constants
    python tools/misc/fit_gelu.py --degree 5
"""
import argparse
import math

import numpy as np


def fit(degree: int, limit: float, nodes: int = 6000, iterations: int = 200) -> np.ndarray:
    """Coefficients of ``s``, lowest order first."""
    t = (np.cos(np.pi * (np.arange(nodes) + 0.5) / nodes) + 1) * limit / 2
    tail = np.array([0.5 * math.erfc(v / math.sqrt(2)) for v in t])
    s = -np.log2(tail)
    slope = np.maximum(t, 1e-3) * tail * math.log(2)
    basis = np.vander(t / limit, degree + 1, increasing=True)
    weights = np.full(nodes, 1 / nodes)
    for _ in range(iterations):
        w = slope * np.sqrt(weights)
        coef = np.linalg.lstsq(basis * w[:, None], s * w, rcond=None)[0]
        weights = weights * np.abs(basis @ coef - s) * slope
        weights /= weights.sum()
    return coef / limit ** np.arange(degree + 1)


def gelu_float32(x: np.ndarray, coef: np.ndarray, limit: float) -> np.ndarray:
    """The kernel's arithmetic in float32 (Horner's scheme)."""
    x = x.astype(np.float32)
    t = np.minimum(np.abs(x), np.float32(limit))
    s = np.full_like(t, np.float32(coef[-1]))
    for c in coef[-2::-1]:
        s = s * t + np.float32(c)
    return np.maximum(x, 0) - np.abs(x) * np.exp2(-s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--degree', type=int, default=6)
    parser.add_argument('--limit', type=float, default=6.0, help='T, where |x| is clipped')
    args = parser.parse_args()
    if args.degree < 1 or args.limit <= 0:
        parser.error('--degree must be >= 1 and --limit > 0')
    coef = fit(args.degree, args.limit)
    x = np.linspace(-12, 12, 200_001).astype(np.float32).astype(np.float64)
    exact = np.array([v * 0.5 * (1 + math.erf(v / math.sqrt(2))) for v in x])
    err = np.abs(gelu_float32(x, coef, args.limit) - exact)
    print('s(t) coefficients, lowest order first:')
    print(',\n'.join(f'  {c:.10g}' for c in coef))
    worst = x[err.argmax()]
    print(f'max |GELU error| in float32 over [-12, 12]: {err.max():.2e} at x = {worst:.3f}')


if __name__ == '__main__':
    main()
