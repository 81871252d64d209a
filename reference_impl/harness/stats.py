"""The benchmark's statistics: paired differences, equivalence, multiplicity and power.

A claim "arm A beats arm B" is measured on n paired seeds (a seed fixes the student's
initialisation, the batch order and the labelled subset in every arm):

    d_i = acc_A(seed i) - acc_B(seed i)        mean d̄, sd s, standard error se = s / √n

    95% interval        d̄ ± t(0.975; n-1) · se
    difference test     H0: δ = 0,            p  = 2 · P(T > |d̄| / se)              (paired t-test)
    equivalence (TOST)  H0: |δ| ≥ Δ,          p≈ = max(P(T > (d̄ + Δ)/se), P(T < (d̄ - Δ)/se))
    (Schuirmann 1987; Δ is the experiment's smallest effect size of interest, SESOI)

Every claim is one member of a family (all claims of the project). Both kinds of p-value
are adjusted over the family with Holm's step-down method (Holm 1979): sort the m
p-values, p_(k) ← max_{j≤k} min(1, (m - j + 1) · p_(j)). Holm controls the chance of *any*
false decisive verdict whatever the dependence between tests; ours are dependent in unknown
ways (claims share teachers, data and arms), which Benjamini–Hochberg's false discovery rate
guarantee does not cover, and a knowledge base states each verdict as a fact on its own.

Verdict at α = 0.05 on the adjusted p-values:

    held                 p_adj < α and d̄ > 0
    contradicted         p_adj < α and d̄ < 0
    no practical effect  p≈_adj < α   (the difference lies inside ±Δ)
    inconclusive         none of these

Zero spread (every seed gives the same difference) makes the t statistic infinite: the
difference is then exact, p = 0 unless d̄ = 0 (p = 1), and p≈ = 0 when |d̄| < Δ (else 1).

Power: the seeds a claim needs are the smallest n whose paired t-test (two-sided, at the
Bonferroni level α/m, the strictest threshold Holm may apply) detects δ = Δ with
probability 0.8, from a pilot's sd (noncentral t). A pilot of 3 seeds estimates that sd
badly (2 degrees of freedom: the estimate is below the true sd about half the time, and often
by half), so the plan uses the pilot's one-sided 80% upper confidence limit instead,

    s_plan = s · √((k − 1) / χ²(0.2; k − 1))        (k pilot seeds; Browne 1995)

which for k = 3 is 2.12 · s. The minimal detectable effect of a run is the δ it would detect
with probability 0.8 at its n and sd.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

ALPHA = 0.05
POWER = 0.8
MIN_SEEDS = 3


@dataclass(frozen=True)
class PairedTest:
    """The statistics of one claim before multiplicity adjustment."""
    differences: tuple[float, ...]
    mean: float
    sd: float
    ci_low: float
    ci_high: float
    p_value: float  # two-sided paired t-test of δ = 0
    equivalence_p_value: float  # TOST of |δ| ≥ sesoi
    sesoi: float

    @property
    def n(self) -> int:
        return len(self.differences)


def _check_pairs(treatment: list[float], reference: list[float]) -> None:
    if len(treatment) != len(reference):
        raise ValueError(f"paired arms need the same seeds: {len(treatment)} values against {len(reference)}")
    if len(treatment) < MIN_SEEDS:
        raise ValueError(f"a comparison needs at least {MIN_SEEDS} seeds (a mean, a spread and a test), "
                         f"got {len(treatment)}")
    if not all(math.isfinite(v) for v in [*treatment, *reference]):
        raise ValueError("accuracies must be finite numbers")


def paired_test(treatment: list[float], reference: list[float], *, sesoi: float) -> PairedTest:
    """Interval, difference test and equivalence test of treatment - reference (see module doc)."""
    from scipy import stats
    _check_pairs(treatment, reference)
    if not sesoi > 0:
        raise ValueError(f"the smallest effect size of interest must be > 0, got {sesoi!r}")
    d = [a - b for a, b in zip(treatment, reference)]
    n = len(d)
    mean = math.fsum(d) / n
    sd = math.sqrt(math.fsum((x - mean) ** 2 for x in d) / (n - 1))
    if sd <= 1e-12 * max(1.0, abs(mean)):  # zero spread: the difference is exact
        exact = 0.0 if abs(mean) <= 1e-12 else mean
        return PairedTest(tuple(d), exact, 0.0, exact, exact, 1.0 if exact == 0 else 0.0,
                          0.0 if abs(exact) < sesoi else 1.0, sesoi)
    se = sd / math.sqrt(n)
    t = stats.t(df=n - 1)
    half = float(t.ppf(1 - ALPHA / 2)) * se
    p = float(2 * t.sf(abs(mean) / se))
    p_equivalent = float(max(t.sf((mean + sesoi) / se), t.cdf((mean - sesoi) / se)))
    return PairedTest(tuple(d), mean, sd, mean - half, mean + half, p, p_equivalent, sesoi)


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input's order."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def verdict(mean: float, adjusted_p: float, adjusted_equivalence_p: float, alpha: float = ALPHA) -> str:
    if adjusted_p < alpha and mean > 0:
        return "held"
    if adjusted_p < alpha and mean < 0:
        return "contradicted"
    if adjusted_equivalence_p < alpha:
        return "no practical effect"
    return "inconclusive"


def power(n: int, sd: float, effect: float, alpha: float = ALPHA) -> float:
    """Probability that a two-sided paired t-test at level alpha on n pairs detects `effect`."""
    from scipy import stats
    if n < 2:
        return 0.0
    if sd <= 0:
        return 1.0
    df = n - 1
    critical = float(stats.t.ppf(1 - alpha / 2, df))
    shift = effect / (sd / math.sqrt(n))
    value = float(stats.nct.sf(critical, df, shift) + stats.nct.cdf(-critical, df, shift))
    if not math.isfinite(value):  # scipy's noncentral t gives NaN far in its tails
        value = 1.0 if abs(shift) > critical else 0.0
    return min(1.0, value)


def equivalence_power(n: int, sd: float, effect: float, sesoi: float, alpha: float = ALPHA) -> float:
    """Probability that TOST at level alpha on n pairs shows |δ| < sesoi when the true difference is
    `effect`: P(T₊ > c and T₋ < −c), bounded below by P(T₊ > c) + P(T₋ < −c) − 1 (T± noncentral t
    with shifts (δ ± Δ)/(σ/√n), c = t(1 − α; n − 1)); the bound is tight where the power is high."""
    from scipy import stats
    if n < 2:
        return 0.0
    if sd <= 0:
        return 1.0 if abs(effect) < sesoi else 0.0
    df, se = n - 1, sd / math.sqrt(n)
    critical = float(stats.t.ppf(1 - alpha, df))
    above = float(stats.nct.sf(critical, df, (effect + sesoi) / se))
    below = float(stats.nct.cdf(-critical, df, (effect - sesoi) / se))
    value = above + below - 1
    return min(1.0, max(0.0, value)) if math.isfinite(value) else 0.0


def seeds_for_a_decisive_verdict(sd: float, effect: float, sesoi: float, *, family_size: int,
                                 target: float = POWER, alpha: float = ALPHA, cap: int = 1000) -> int:
    """Smallest n (≥ MIN_SEEDS) at which a claim whose true difference is `effect` gets a decisive
    verdict (the difference test or TOST rejects at the Bonferroni level) with the target
    probability; the larger of the two powers is used, a lower bound on P(either); `cap` + 1 when
    even `cap` seeds are not enough. For costing a re-run, not for planning one (a plan must not
    assume the effect it tests)."""
    level = alpha / max(1, family_size)
    for n in range(MIN_SEEDS, cap + 1):
        if max(power(n, sd, effect, level), equivalence_power(n, sd, effect, sesoi, level)) >= target:
            return n
    return cap + 1


PLANNING_CONFIDENCE = 0.8


def planning_sd(pilot_sd: float, pilot_n: int, *, confidence: float = PLANNING_CONFIDENCE) -> float:
    """The one-sided upper confidence limit of a pilot's sd (Browne 1995), the sd a seed
    plan should assume: s · √((k − 1) / χ²(1 − confidence; k − 1))."""
    from scipy import stats
    if pilot_n < 2:
        raise ValueError(f"a pilot needs at least 2 seeds to estimate a spread, got {pilot_n}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if pilot_sd < 0:
        raise ValueError(f"an sd cannot be negative, got {pilot_sd}")
    df = pilot_n - 1
    return pilot_sd * math.sqrt(df / float(stats.chi2.ppf(1 - confidence, df)))


def seeds_needed(sd: float, sesoi: float, *, family_size: int, target: float = POWER,
                 alpha: float = ALPHA, cap: int = 1000) -> int:
    """Smallest n (≥ MIN_SEEDS) with the target power at δ = sesoi, at the Bonferroni level
    alpha / family_size; `cap` + 1 when even `cap` seeds are not enough."""
    level = alpha / max(1, family_size)
    for n in range(MIN_SEEDS, cap + 1):
        if power(n, sd, sesoi, level) >= target:
            return n
    return cap + 1


def minimal_detectable_effect(n: int, sd: float, *, family_size: int, target: float = POWER,
                              alpha: float = ALPHA) -> float:
    """The effect a run of n seeds with this sd detects with the target power (bisection)."""
    if n < 2:
        raise ValueError(f"a minimal detectable effect needs at least 2 seeds, got {n}")
    if sd <= 0:
        return 0.0
    level = alpha / max(1, family_size)
    low, high = 0.0, sd
    while power(n, sd, high, level) < target:  # grow the bracket until it holds the answer
        low, high = high, 2 * high
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (low, middle) if power(n, sd, middle, level) >= target else (middle, high)
    return high
