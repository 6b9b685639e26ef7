"""Intervals for the numbers the project reports."""
from __future__ import annotations

import math


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials (95% for z = 1.96): unlike p +- z*sqrt(p(1-p)/n) it
    stays inside [0, 1] and is not empty at k = 0 or k = n, which small evaluations hit all the time."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for paired binary outcomes (the same episodes' starts played by two agents):
    b = pairs only the first succeeded on, c = pairs only the second did. Under "no difference" each of the b + c
    discordant pairs favours either side with probability 1/2, so p = P(Binomial(b + c, 1/2) as or more lopsided)."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2 ** n
    return min(1.0, 2 * tail)
