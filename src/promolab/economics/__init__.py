"""promolab.economics: what an analysed experiment earned: incremental revenue, margin, costs by mechanic,
ROI and iROAS with uncertainty (:mod:`~promolab.economics.promotion`), and the price response of
price-point tests (:mod:`~promolab.economics.elasticity`)."""

from promolab.economics.promotion import PromotionEconomics, evaluate

__all__ = ["PromotionEconomics", "evaluate"]
