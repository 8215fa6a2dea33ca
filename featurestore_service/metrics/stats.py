"""Two-sample tests written out (KS, chi-squared, PSI) rather than importing scipy.

scipy would add about 40 MB of wheels to every Cairn install for two survival functions; the
formulas are short and the tests check them against scipy.stats on the same samples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

PSI_FLOOR = 1e-4  # an empty bin would make PSI infinite; a bin this small is "nearly empty"


def kolmogorov_sf(d: float, n1: int, n2: int) -> float:
    """Asymptotic p-value of a two-sample KS statistic ``d`` (Kolmogorov's limit series)."""
    if n1 <= 0 or n2 <= 0:
        return 1.0
    en = n1 * n2 / (n1 + n2)
    lam = d * math.sqrt(en)
    if lam < 1e-3:
        return 1.0
    total = 0.0
    for k in range(1, 101):
        term = 2.0 * (-1) ** (k - 1) * math.exp(-2.0 * k * k * lam * lam)
        total += term
        if abs(term) < 1e-12:
            break
    return min(1.0, max(0.0, total))


def ks_two_sample(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Exact statistic on two raw samples, asymptotic p-value (the reference the tests use)."""
    xs, ys = sorted(a), sorted(b)
    n1, n2 = len(xs), len(ys)
    i = j = 0
    d = 0.0
    while i < n1 and j < n2:
        x = min(xs[i], ys[j])
        while i < n1 and xs[i] <= x:
            i += 1
        while j < n2 and ys[j] <= x:
            j += 1
        d = max(d, abs(i / n1 - j / n2))
    return d, kolmogorov_sf(d, n1, n2)


def _gamma_q(a: float, x: float) -> float:
    """Regularised upper incomplete gamma Q(a, x): series below a + 1, continued fraction above."""
    if x <= 0:
        return 1.0
    log_front = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1:
        term = total = 1.0 / a
        ap = a
        for _ in range(10_000):
            ap += 1
            term *= x / ap
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return max(0.0, 1.0 - total * math.exp(log_front))
    tiny = 1e-300
    b = x + 1 - a
    c = 1 / tiny
    d = 1 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-15:
            break
    return min(1.0, math.exp(log_front) * h)


def chi2_sf(statistic: float, dof: int) -> float:
    if dof <= 0:
        return 1.0
    return _gamma_q(dof / 2.0, statistic / 2.0)


def chi2_homogeneity(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, int]:
    """Chi-squared test that two count vectors over the same categories share one distribution.

    The 2 x k contingency test without continuity correction (scipy's ``chi2_contingency(...,
    correction=False)``); categories empty in both are dropped. Returns statistic, p, dof.
    """
    pairs = [(x, y) for x, y in zip(a, b, strict=True) if x + y > 0]
    n1 = sum(x for x, _ in pairs)
    n2 = sum(y for _, y in pairs)
    total = n1 + n2
    if len(pairs) < 2 or n1 <= 0 or n2 <= 0:
        return 0.0, 1.0, 0
    statistic = 0.0
    for x, y in pairs:
        column = x + y
        e1 = n1 * column / total
        e2 = n2 * column / total
        statistic += (x - e1) ** 2 / e1 + (y - e2) ** 2 / e2
    dof = len(pairs) - 1
    return statistic, chi2_sf(statistic, dof), dof


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Population stability index of two distributions over the same bins (fractions or counts)."""
    se = sum(expected)
    sa = sum(actual)
    if se <= 0 or sa <= 0:
        return 0.0
    value = 0.0
    for e, a in zip(expected, actual, strict=True):
        pe = max(e / se, PSI_FLOOR)
        pa = max(a / sa, PSI_FLOOR)
        value += (pa - pe) * math.log(pa / pe)
    return value
