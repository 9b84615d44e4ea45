"""ladsim's one interval estimator against scipy's percentile bootstrap, and its edge cases."""

import numpy as np
from scipy import stats

from ladsim.stats import bootstrap_interval, mean_interval


def test_the_numpy_bootstrap_agrees_with_scipys_percentile_bootstrap():
    values = np.random.default_rng(3).normal(1.0, 2.0, 64)
    mean, lo, hi = bootstrap_interval(values)
    ref = stats.bootstrap((values,), np.mean, confidence_level=0.95, n_resamples=20000, method="percentile",
                          random_state=np.random.default_rng(0)).confidence_interval
    se = values.std(ddof=1) / np.sqrt(values.size)
    # The two differ only by resampling noise: measured |diff| <= 0.03 standard errors at these sizes; 0.1 allowed.
    assert abs(lo - ref.low) < 0.1 * se and abs(hi - ref.high) < 0.1 * se
    assert mean == values.mean() and lo < mean < hi


def test_a_wrong_quantile_would_be_caught():
    values = np.random.default_rng(4).normal(0.0, 1.0, 64)
    _, lo, hi = bootstrap_interval(values, level=0.5)  # a 50% interval is much narrower than the 95% one
    _, lo95, hi95 = bootstrap_interval(values)
    assert hi - lo < 0.5 * (hi95 - lo95)


def test_degenerate_samples_give_the_mean_itself():
    assert bootstrap_interval(np.full(8, 0.25)) == (0.25, 0.25, 0.25)
    assert mean_interval(np.array([2.0])) == {"mean": 2.0, "lo": 2.0, "hi": 2.0}
