"""promolab.design: sample size, power, assignment and balance (see docs/architecture.md).

The package is callable: ``promolab.design(spec)`` is :func:`promolab.api.design`.
"""

import sys

import promolab

sys.modules[__name__].__class__ = promolab.Stage
