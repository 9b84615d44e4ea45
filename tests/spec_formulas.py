"""Reference generators for the tests: ``f(x)`` and ``f'(x)`` written directly from LAD_SPEC's table, in x-space
(numpy float64), independent of ``ladsim.divergences`` (which works in log space)."""

import numpy as np

F = {
    "kl": lambda x: x * np.log(x),
    "rkl": lambda x: -np.log(x),
    "jf": lambda x: (x - 1.0) * np.log(x),
    "js": lambda x: 0.5 * (x * np.log(x) - (x + 1.0) * np.log((x + 1.0) / 2.0)),
    "hd": lambda x: 0.5 * (np.sqrt(x) - 1.0) ** 2,
    "tv": lambda x: 0.5 * np.abs(x - 1.0),
    "pearson": lambda x: (x - 1.0) ** 2,
    "neyman": lambda x: (1.0 - x) ** 2 / x,
}

# f'(x), differentiated by hand from the same table.
FPRIME = {
    "kl": lambda x: np.log(x) + 1.0,
    "rkl": lambda x: -1.0 / x,
    "jf": lambda x: np.log(x) + 1.0 - 1.0 / x,
    "js": lambda x: 0.5 * np.log(2.0 * x / (x + 1.0)),
    "hd": lambda x: 0.5 * (1.0 - 1.0 / np.sqrt(x)),
    "tv": lambda x: 0.5 * np.sign(x - 1.0),
    "pearson": lambda x: 2.0 * (x - 1.0),
    "neyman": lambda x: 1.0 - 1.0 / x**2,
}
