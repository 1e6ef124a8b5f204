#!/usr/bin/env python3
"""Fits the rational tanh of tensor/fastmath.h (run with /usr/bin/python3; needs numpy).

tanh(x) = x * P(u) / Q(u) for |x| <= 9, u = x^2 / 81, P of degree 5, Q of degree 3 with
Q(0) = 1, chosen for the smallest largest relative error. The fit is linear least squares
in Chebyshev polynomials of 2u - 1 (well conditioned), iterated: each pass divides by the
previous denominator (Sanathanan-Koerner, so the linearised error approaches the true
relative error) and raises the weight where the error is largest (Lawson), keeping the
best pass. Prints the coefficients in u, constant first, and the error in double and in
float (Horner in float, as the C code evaluates it).
"""
import numpy as np
from numpy.polynomial import chebyshev as cheb
from numpy.polynomial import polynomial as poly

XMAX, NP, NQ, PASSES = 9.0, 6, 4, 60

x = np.concatenate([np.geomspace(1e-5, 0.1, 2000), np.linspace(0.1, XMAX, 20000)])
u = x * x / (XMAX * XMAX)
z = 2 * u - 1
g = np.tanh(x) / x  # fit g = P / Q: relative error of g = relative error of tanh


def fit():
    w, q_prev, best = np.ones_like(u), np.ones_like(u), None
    for _ in range(PASSES):
        tp = cheb.chebvander(z, NP - 1)
        tq = cheb.chebvander(z, NQ - 1)[:, 1:]  # Q's T0 coefficient is 1: moved to the rhs
        scale = w / (g * q_prev)
        a = np.hstack([tp, -g[:, None] * tq]) * scale[:, None]
        sol, *_ = np.linalg.lstsq(a, g * scale, rcond=None)
        cp, cq = sol[:NP], np.concatenate([[1.0], sol[NP:]])
        qv = cheb.chebval(z, cq)
        rel = np.abs(cheb.chebval(z, cp) / qv - g) / g
        if qv.min() <= 0:
            rel[:] = np.inf  # a pole in range: never keep it
        if best is None or rel.max() < best[0]:
            best = (rel.max(), cp, cq)
        q_prev = qv
        w = w * np.sqrt(rel / rel.max())
        w *= len(w) / w.sum()
    return best


def in_u(c):
    """Chebyshev coefficients in z = 2u - 1 -> monomial coefficients in u."""
    out = np.zeros(len(c))
    for k, ck in enumerate(cheb.cheb2poly(c)):
        term = poly.polypow([-1.0, 2.0], k)
        out[: len(term)] += ck * term
    return out


err, cp, cq = fit()
P, Q = in_u(cp), in_u(cq)
P, Q = P / Q[0], Q / Q[0]
xf = x.astype(np.float32)
uf = (xf * xf * np.float32(1 / 81.0)).astype(np.float32)


def horner(c, v):
    r = np.float32(c[-1])
    for a in c[-2::-1]:
        r = (r * v + np.float32(a)).astype(np.float32)
    return r


tf = xf * (horner(P, uf) / horner(Q, uf))
errf = (np.abs(tf.astype(np.float64) - np.tanh(x)) / np.tanh(x)).max()
print("largest relative error: %.3g in double, %.3g in float" % (err, errf))
print("P (u^0 first):", ", ".join("%.9g" % c for c in P))
print("Q (u^0 first):", ", ".join("%.9g" % c for c in Q))
