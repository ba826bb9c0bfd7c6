"""What the notebooks' check cells compute before they assert, written once: an arm's mean and
sample standard deviation over its seeds, in a results file or in a study's records, and the
course's rule that two arms differ only beyond the seed spread, 2 sqrt(sd_a^2 + sd_b^2). Each
returns numbers; the asserts stay in the notebooks, where they can fail."""
from __future__ import annotations

import numpy as np


def seed_stats(result, arm, key="final_valid_ppl"):
    """(mean, sample sd) of `key` over the runs of `arm` in a results file (sd 0 with one run)."""
    v = np.array([r[key] for r in result["arms"][arm]["runs"]])
    return v.mean(), (v.std(ddof=1) if len(v) > 1 else 0.0)


def beyond_spread(a, b):
    """Whether the means of a and b, each (mean, sd, ...), differ by more than 2 sqrt(sd_a^2 + sd_b^2)."""
    return abs(a[0] - b[0]) > 2 * np.hypot(a[1], b[1])


def arm_seeds(rec, family, arm, key="valid"):
    """(mean, sd, number of seeds) of `arm`'s `key` in a study's records; (nan, nan, n) under 2 seeds."""
    v = np.array(rec.arm_values(family, arm).get(key, []))
    return (v.mean(), v.std(ddof=1), len(v)) if len(v) >= 2 else (np.nan, np.nan, len(v))


def ends_above(rec, family, a, b, key="valid"):
    """(b's mean minus a's, whether b ends above a beyond the seed spread), from the study's records."""
    (ma, sa, _), (mb, sb, _) = arm_seeds(rec, family, a, key), arm_seeds(rec, family, b, key)
    return mb - ma, mb - ma > 2 * np.sqrt(sa ** 2 + sb ** 2)


def ends_below(rec, family, a, b, key="valid"):
    """Whether b's mean ends below a's beyond the seed spread (None while either has under 3 seeds)."""
    (ma, sa, na), (mb, sb, nb) = arm_seeds(rec, family, a, key), arm_seeds(rec, family, b, key)
    if min(na, nb) < 3:
        return None
    return bool(mb - ma < -2 * np.sqrt(sa ** 2 + sb ** 2))
