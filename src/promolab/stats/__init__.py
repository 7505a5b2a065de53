"""The statistical floor: pure numerics every stage builds on, and nothing that reads a spec or a file.

- :mod:`~promolab.stats.moments`: per-arm sufficient statistics (moments, histograms, power sums) that
  merge with ``+``;
- :mod:`~promolab.stats.estimators`: two-arm comparisons from per-arm summaries (Welch, Wald, delta
  method, non-inferiority, Mann-Whitney) and the shared quantile and tail functions;
- :mod:`~promolab.stats.conjugate`: closed-form posteriors and exact comparisons;
- :mod:`~promolab.stats.mcmc`: PyMC models written on sufficient statistics (pymc imported inside);
- :mod:`~promolab.stats.multiplicity`: Holm and Benjamini-Hochberg;
- :mod:`~promolab.stats.sizing`: normal power, sample size and MDE;
- :mod:`~promolab.stats.intervals`: highest-density intervals of draws;
- :mod:`~promolab.stats.sequential`: confidence sequences, always-valid p-values, alpha spending.
"""
