"""The one decision rule (:func:`promolab.decision.decide`): per-arm verdicts and the experiment's.

Analyses are built by hand (results, guardrails, SRM) so that each rule's branch is reached exactly;
the economics come from :func:`promotion_economics` on known moments.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from promolab.analyze import Analysis
from promolab.analyze.bayesian import BayesAnalysis, BayesGuardrail, BayesResult
from promolab.analyze.frequentist import GuardrailResult, LiftResult
from promolab.decision import Decision, decide
from promolab.design.srm import srm_test
from promolab.economics.promotion import promotion_economics

from .test_economics import arm, make_spec

PCT20 = {"id": "pct20", "kind": "discount", "mechanic": "percent_off", "value": 20}
PCT10 = {"id": "pct10", "kind": "discount", "mechanic": "percent_off", "value": 10}


def _spec(decision: dict | None = None, three_arms: bool = False):
    spec = make_spec(PCT20, decision=decision) if decision else make_spec(PCT20)
    if not three_arms:
        return spec
    data = spec.model_dump(mode="json", exclude_none=True)
    data["variants"] = [
        {"id": "control", "kind": "control", "weight": 0.4},
        {**PCT10, "weight": 0.3},
        {**PCT20, "weight": 0.3},
    ]
    from promolab.spec import spec_from_dict

    return spec_from_dict(data)


def _row(variant: str, p: float, diff: float, flags: tuple[str, ...] = ()) -> LiftResult:
    testable = not flags
    return LiftResult(
        metric="revenue", variant=variant, role="primary", n_control=1000, n_variant=1000,
        control_mean=4.0, variant_mean=4.0 + diff, abs_diff=diff if testable else None,
        se=0.1 if testable else None, abs_ci=(diff - 0.2, diff + 0.2) if testable else None,
        rel_lift=diff / 4.0 if testable else None, rel_ci=None, p_value=p if testable else None,
        p_value_adjusted=p if testable else None, method="welch-t", flags=flags,
    )  # fmt: skip


def _analysis(rows: list[LiftResult], failed: tuple[str, ...] = (), srm: bool = False) -> Analysis:
    weights = {"control": 1.0, **{r.variant: 1.0 for r in rows}}
    counts = {"control": 1000, **{r.variant: (700 if srm else 1000) for r in rows}}
    guardrails = [
        GuardrailResult("conversion", r.variant, "relative drop <= 5.0%", 0.01, r.variant not in failed)
        for r in rows
    ]
    return Analysis(
        experiment="econ-test", spec_hash="x", version="test", reference="control",
        srm=srm_test(counts, weights), results=rows, guardrails=guardrails,
        caps={}, covariates=(),
    )  # fmt: skip


def _money(spec, revenue: dict[str, float]):
    moments = {"control": arm(n=100_000, conversion=0.05, revenue=4.0)}
    moments |= {a: arm(n=100_000, conversion=0.06, revenue=r) for a, r in revenue.items()}
    return promotion_economics(spec, moments)


# ---------------------------------------------------------------------- statistical rule


def test_ships_the_significantly_better_arm_and_names_it():
    decision = decide(_spec(), _analysis([_row("pct20", 1e-6, 0.5)]))
    assert (decision.action, decision.variant, decision.rule) == ("ship", "pct20", "frequentist")
    (verdict,) = decision.arms
    assert (verdict.action, verdict.finding) == ("ship", "better")
    assert verdict.line.startswith("pct20: ship, significantly better: revenue +12.5% (Holm p < 0.0001)")


def test_a_significantly_worse_arm_says_the_reference_wins():
    """Cookie Cats / fast-food Promotion 2: the reference arm is significantly better; say so."""
    spec = _spec(three_arms=True)
    decision = decide(spec, _analysis([_row("pct10", 0.40, 0.05), _row("pct20", 0.003, -0.72)]))
    assert decision.action == "stop"
    assert "reference arm control wins: pct20 significantly worse on revenue" in decision.reason
    by_arm = {a.variant: a for a in decision.arms}
    assert by_arm["pct20"].finding == "worse"
    assert "significantly WORSE than the reference: revenue -18.0% (Holm p = 0.0030)" in by_arm["pct20"].line
    assert by_arm["pct10"].finding == "no_difference"


def test_lower_is_better_metrics_flip_the_finding():
    spec = make_spec(PCT20, metrics=[{"id": "revenue", "kind": "continuous", "source": "orders",
                                       "column": "amount", "direction": "lower"}])  # fmt: skip
    decision = decide(spec, _analysis([_row("pct20", 0.001, -0.5)]))
    assert decision.arms[0].finding == "better"


def test_a_failed_guardrail_or_a_sample_ratio_mismatch_never_ships():
    blocked = decide(_spec(), _analysis([_row("pct20", 1e-6, 0.5)], failed=("pct20",)))
    assert blocked.action == "iterate"
    assert "fails the guardrail(s) conversion" in blocked.reason
    assert blocked.arms[0].failed_guardrails == ("conversion",)
    srm = decide(_spec(), _analysis([_row("pct20", 1e-6, 0.5)], srm=True))
    assert (srm.action, srm.variant) == ("iterate", None)
    assert "Sample-ratio mismatch" in srm.reason
    assert all(a.action == "iterate" for a in srm.arms)


def test_an_untestable_primary_metric_is_never_a_confident_stop():
    decision = decide(_spec(), _analysis([_row("pct20", 0.5, 0.0, flags=("ZERO_VARIANCE",))]))
    assert decision.action == "iterate"
    assert decision.arms[0].finding == "untestable"
    assert "ZERO_VARIANCE" in decision.arms[0].line


# ---------------------------------------------------------------------- the money rule


PROFIT = {"metric": "profit", "prob_positive": 0.9}


def test_money_rule_ships_a_promotion_that_pays_with_its_money_in_the_line():
    spec = _spec(PROFIT)
    economics = _money(spec, {"pct20": 8.0})  # units double: well above the +100% break-even
    decision = decide(spec, _analysis([_row("pct20", 1e-9, 4.0)]), economics)
    assert (decision.action, decision.variant, decision.rule) == ("ship", "pct20", "frequentist + profit")
    verdict = decision.arms[0]
    profit = economics.arms[0].quantities["net_profit"]
    assert verdict.net_profit == profit.value
    assert verdict.prob_profit == profit.prob_positive
    assert verdict.pays is True
    assert f"earns {profit.value:,.0f} USD" in verdict.line


def test_money_rule_iterates_when_the_lift_does_not_pay_and_stops_without_lift():
    spec = _spec(PROFIT)
    economics = _money(spec, {"pct20": 4.6})  # +44% units: a significant lift below break-even
    iterate = decide(spec, _analysis([_row("pct20", 1e-9, 0.6)]), economics)
    assert iterate.action == "iterate"
    assert "break-even of +100.0%" in iterate.reason
    stop = decide(spec, _analysis([_row("pct20", 0.4, 0.6)]), economics)
    assert stop.action == "stop"
    assert "none pays for itself with P >= 0.9" in stop.reason
    assert "loses" in stop.arms[0].line
    assert "ROI" in stop.arms[0].line


def test_money_rule_never_ships_with_a_failed_guardrail():
    spec = _spec(PROFIT)
    economics = _money(spec, {"pct20": 8.0})
    blocked = decide(spec, _analysis([_row("pct20", 1e-9, 4.0)], failed=("pct20",)), economics)
    assert blocked.action == "iterate"
    assert "pct20 pays for itself" in blocked.reason
    assert "fails the guardrail(s) conversion" in blocked.reason


def test_money_rule_ranks_arms_by_net_profit():
    spec = _spec(PROFIT, three_arms=True)
    economics = _money(spec, {"pct10": 7.0, "pct20": 9.0})
    decision = decide(spec, _analysis([_row("pct10", 1e-9, 3.0), _row("pct20", 1e-9, 5.0)]), economics)
    profits = {a.variant: a.net_profit for a in decision.arms}
    assert decision.variant == max(profits, key=lambda k: profits[k] or 0.0)


# ---------------------------------------------------------------------- the Bayesian rule


def _bayes(rows: list[LiftResult], beats: dict[str, float], guardrail_ok: bool = True) -> Analysis:
    results = [
        BayesResult(
            metric="revenue",
            variant=v,
            model="normal",
            control_mean=4.0,
            variant_mean=4.2,
            abs_mean=0.2,
            abs_hdi=(0.0, 0.4),
            rel_lift_mean=0.05,
            rel_hdi=(0.0, 0.1),
            prob_beat_control=p,
            prob_best=p,
            expected_loss=0.01,
            decision="undecided",
        )
        for v, p in beats.items()
    ]
    guardrails = [BayesGuardrail("conversion", v, "m", 0.99, guardrail_ok) for v in beats]
    bayes = BayesAnalysis(0.95, 0.0, 0.95, results, guardrails)
    return replace(_analysis(rows), method="bayesian", bayes=bayes)


def test_bayesian_rule_uses_the_posterior_threshold():
    rows = [_row("pct20", 0.5, 0.01)]  # frequentist: no difference
    decision = decide(_spec(), _bayes(rows, {"pct20": 0.97}))
    assert (decision.action, decision.variant, decision.rule) == ("ship", "pct20", "bayesian")
    assert "P(better) = 0.970" in decision.arms[0].line
    worse = decide(_spec(), _bayes(rows, {"pct20": 0.02}))
    assert worse.arms[0].finding == "worse"
    assert worse.action == "stop"
    assert decide(_spec(), _bayes(rows, {"pct20": 0.97}), rule="frequentist").action == "stop"
    blocked = decide(_spec(), _bayes(rows, {"pct20": 0.97}, guardrail_ok=False))
    assert blocked.action == "iterate"


def test_bayesian_rule_needs_the_bayesian_engine():
    with pytest.raises(ValueError, match="Bayesian engine"):
        decide(_spec(), _analysis([_row("pct20", 0.5, 0.0)]), rule="bayesian")


# ---------------------------------------------------------------------- properties


@pytest.mark.parametrize("p", [1e-6, 0.2])
def test_lift_sign_symmetry_of_the_finding(p):
    """Mirroring the difference swaps better and worse (when significant), and nothing else."""
    up = decide(_spec(), _analysis([_row("pct20", p, 0.5)])).arms[0].finding
    down = decide(_spec(), _analysis([_row("pct20", p, -0.5)])).arms[0].finding
    swap = {"better": "worse", "worse": "better", "no_difference": "no_difference"}
    assert down == swap[up]


def test_decision_round_trips_through_its_dict():
    spec = _spec(PROFIT)
    decision = decide(spec, _analysis([_row("pct20", 1e-9, 4.0)]), _money(spec, {"pct20": 8.0}))
    assert Decision.from_dict(decision.to_dict()) == decision
    assert np.isfinite(decision.arms[0].net_profit)
