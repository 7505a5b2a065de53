"""promolab: marketing experiments as code, with decision-ready statistics.

``import promolab`` stays light: it loads the spec layer only (never pandas-heavy analysis or pymc).
"""

from promolab.errors import DataError, PromolabError, SpecError
from promolab.spec import ExperimentSpec, dump_spec, load_spec, spec_hash

__version__ = "0.1.0"

__all__ = [
    "DataError",
    "ExperimentSpec",
    "PromolabError",
    "SpecError",
    "__version__",
    "dump_spec",
    "load_spec",
    "spec_hash",
]
