"""The statistics every comparison uses: B against A as a ratio of medians with a bootstrap 95 %
confidence interval (scipy.stats.bootstrap), a verdict that names its numbers, outliers shown
(never dropped), and the interval width an adaptive A/B stops at. Also the repeat summary of a
bench point and which cache it measured.

B/A comes from the paired ratios B[i]/A[i] for an interleaved A/B, from each side on its own for
two runs taken apart; a bootstrap interval from 20 samples a side, Student's t on the logarithms
below (``ratio_interval``).
The verdict follows criterion.rs: a change is called only when the whole interval lies beyond a
small noise threshold (``REPRO_NOISE_THRESHOLD``); otherwise "no change detected", with the largest
effect the interval still allows.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


def _scipy_stats() -> Any:
    """scipy.stats, imported when a statistic needs it: it takes about a second to import, and
    every `repro` command (most of them a few milliseconds of work) loads this module."""
    from scipy import stats

    return stats


CONFIDENCE = 0.95
RESAMPLES = 4000
# Below this no interval is computed.
MIN_SAMPLES = 3
# From this many samples a side the interval is a bootstrap's; below, Student's t on the logs.
BOOTSTRAP_MIN = 20
# Tukey's far-out fence: a sample beyond quartile -/+ 3 IQR is listed as an outlier.
OUTLIER_IQR = 3.0


def spread(samples: list[float]) -> float:
    """Relative range of the samples, (max - min) / median; 0 for fewer than two."""
    if len(samples) < 2:
        return 0.0
    mid = statistics.median(samples)
    return (max(samples) - min(samples)) / mid if mid > 0 else 0.0


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(samples), 4),
        "min": round(min(samples), 4),
        "max": round(max(samples), 4),
        "spread": round(spread(samples), 4),
    }


def outliers(samples: list[float]) -> list[int]:
    """Indexes of the samples beyond Tukey's far-out fences (kept in every statistic; medians
    are robust to them, but a reader should see them)."""
    if len(samples) < 4:
        return []
    q1, q3 = np.percentile(samples, [25, 75])
    low, high = q1 - OUTLIER_IQR * (q3 - q1), q3 + OUTLIER_IQR * (q3 - q1)
    return [i for i, x in enumerate(samples) if x < low or x > high]


def _ratio_of_medians(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.asarray(np.median(b, axis=axis) / np.median(a, axis=axis))


def _median_ratio(log_ratios: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.asarray(np.exp(np.median(log_ratios, axis=axis)))


def _bootstrap(data: tuple[np.ndarray, ...], statistic: Any, confidence: float, seed: int) -> tuple[float, float]:
    """scipy's bootstrap interval: BCa, or the percentile interval where BCa is undefined (e.g.
    all samples equal)."""
    import warnings

    kwargs: dict[str, Any] = {
        "statistic": statistic,
        "vectorized": True,
        "confidence_level": confidence,
        "n_resamples": RESAMPLES,
        "random_state": np.random.default_rng(seed),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # BCa's "degenerate" warning: handled by the fallback
        ci = _scipy_stats().bootstrap(data, method="BCa", **kwargs).confidence_interval
        if not (np.isfinite(ci.low) and np.isfinite(ci.high)):
            ci = _scipy_stats().bootstrap(data, method="percentile", **kwargs).confidence_interval
    return float(ci.low), float(ci.high)


def ratio_interval(
    a: list[float], b: list[float], paired: bool, confidence: float = CONFIDENCE, seed: int = 0
) -> tuple[float, float, float, str]:
    """B/A with its 95 % (by default) interval, and the method: (ratio, low, high, method).

    Paired (A[i] and B[i] measured side by side, as scripts/ab.sh does): from the paired ratios
    B[i]/A[i], so that what both members of a pair share (the machine's state at that moment)
    cancels. Unpaired (two runs taken at different times): from each side on its own.
    With at least BOOTSTRAP_MIN samples a side: the median (of the paired ratios; else the ratio
    of the medians), its interval by bootstrap, so a burst that slows a few samples does not move
    it. With fewer, where a bootstrap's interval is too narrow: the geometric mean with
    Student's t interval on the logarithms (paired t, or Welch's t), which widens with outliers."""
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if min(len(xa), len(xb)) >= BOOTSTRAP_MIN:
        if paired:
            logs = np.log(xb / xa)
            low, high = _bootstrap((logs,), _median_ratio, confidence, seed)
            return float(np.exp(np.median(logs))), low, high, "bootstrap of the median paired ratio"
        low, high = _bootstrap((xa, xb), _ratio_of_medians, confidence, seed)
        return float(np.median(xb) / np.median(xa)), low, high, "bootstrap of the ratio of medians"
    if paired:
        logs = np.log(xb / xa)
        ci = _scipy_stats().ttest_1samp(logs, 0.0).confidence_interval(confidence)
        return float(np.exp(logs.mean())), float(np.exp(ci.low)), float(np.exp(ci.high)), "paired t on log ratios"
    la, lb = np.log(xa), np.log(xb)
    ci = _scipy_stats().ttest_ind(lb, la, equal_var=False).confidence_interval(confidence)
    return float(np.exp(lb.mean() - la.mean())), float(np.exp(ci.low)), float(np.exp(ci.high)), "Welch t on logs"


@dataclass
class Effect:
    """B against A for one metric."""

    metric: str
    n_a: int
    n_b: int
    median_a: float
    median_b: float
    ratio: float
    low: float
    high: float
    noise: float
    paired: bool
    method: str
    verdict: str  # slower, faster, no change, too few samples
    outliers_a: list[int]
    outliers_b: list[int]
    # "lower is better" for times; throughput is "higher is better" (faster when B/A > 1).
    higher_is_better: bool = False

    @property
    def width(self) -> float:
        return self.high - self.low

    def text(self) -> str:
        """'slower by 5.8 % [3.1, 8.6]', 'faster by ...', 'no change detected (|effect| < 2.4 % at 95 %)'."""
        if self.verdict == "too few samples":
            return f"too few samples ({min(self.n_a, self.n_b)}) for an interval"
        pct = (self.ratio - 1) * 100
        band = f"[{(self.low - 1) * 100:+.1f}, {(self.high - 1) * 100:+.1f}]"
        if self.verdict in ("slower", "faster"):
            return f"{self.verdict} by {abs(pct):.1f} % {band}"
        bound = max(abs(self.low - 1), abs(self.high - 1)) * 100
        return f"no change detected (|effect| < {bound:.1f} % at {CONFIDENCE * 100:.0f} %; B/A {pct:+.1f} % {band})"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "text": self.text()}


def judge(low: float, high: float, noise: float, higher_is_better: bool = False) -> str:
    """The verdict of an interval of B/A: a change only when all of it is beyond the noise."""
    if low > 1 + noise:
        return "faster" if higher_is_better else "slower"
    if high < 1 - noise:
        return "slower" if higher_is_better else "faster"
    return "no change"


def effect(
    metric: str, a: list[float], b: list[float], noise: float, paired: bool, higher_is_better: bool = False, seed: int = 0
) -> Effect:
    """B against A for one metric's samples (``paired``: A[i] and B[i] from one block)."""
    if paired and len(a) != len(b):
        raise ValueError(f"{metric}: paired samples need equal counts ({len(a)} vs {len(b)})")
    ma, mb = float(statistics.median(a)), float(statistics.median(b))
    if min(len(a), len(b)) < MIN_SAMPLES:
        ratio, low, high, method, word = mb / ma, float("nan"), float("nan"), "", "too few samples"
    else:
        ratio, low, high, method = ratio_interval(a, b, paired, seed=seed)
        word = judge(low, high, noise, higher_is_better)
    return Effect(
        metric=metric,
        n_a=len(a),
        n_b=len(b),
        median_a=round(ma, 5),
        median_b=round(mb, 5),
        ratio=round(ratio, 5),
        low=round(low, 5),
        high=round(high, 5),
        noise=noise,
        paired=paired,
        method=method,
        verdict=word,
        outliers_a=outliers(a),
        outliers_b=outliers(b),
        higher_is_better=higher_is_better,
    )


def noise_threshold() -> float:
    """REPRO_NOISE_THRESHOLD: the smallest change a comparison calls real."""
    from reproduce_vllm_lmcache import knobs

    return knobs.number("REPRO_NOISE_THRESHOLD", positive=False)


def narrow_enough(effects: list[Effect], target_width: float) -> bool:
    """Every interval computed and narrower than ``target_width`` (in B/A, e.g. 0.04 = 4 points)."""
    return all(np.isfinite(e.width) and e.width <= target_width for e in effects)


def cache_of(p: dict[str, Any]) -> str:
    """Which cache served a point's warm requests: none (plain vLLM, the cold baseline), apc
    (vLLM's own prefix cache) or lmcache (sweeps recorded before the APC column: by chunk size)."""
    return str(p.get("cache") or ("lmcache" if p["chunk_size"] else "none"))
