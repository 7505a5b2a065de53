"""Hash, stratified, cluster assignment and rerandomisation (promolab.design.assignment)."""

from __future__ import annotations

import doctest
import hashlib

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from promolab.design import assignment, balance
from promolab.design.assignment import (
    BUCKETS,
    HOLDOUT,
    assign_clusters,
    assign_stratified,
    assign_units,
    bucket_ranges,
    rerandomise,
)
from promolab.design.balance import standardised_mean_differences
from promolab.errors import DataError

ARMS = [("control", 0.25), ("pct15", 0.25), ("save10", 0.25), ("bogo", 0.25)]
# The DuckDB expression of the module docstring (asserted verbatim below), with its salt.
SQL_BUCKET = "('0x' || left(sha256(salt || ':' || CAST(unit_id AS VARCHAR)), 16))::UBIGINT % 10000"

ids_int = st.lists(st.integers(-(2**63), 2**64 - 1), min_size=1, max_size=200, unique=True)
ids_text = st.lists(st.text(min_size=0, max_size=12), min_size=1, max_size=200, unique=True)
unit_id_lists = ids_int | ids_text
salts = st.text(max_size=30)


@st.composite
def arm_lists(draw: st.DrawFn, max_arms: int = 5) -> list[tuple[str, float]]:
    """2..max_arms arms with weights >= 0.02 summing to 1."""
    raw = draw(st.lists(st.floats(0.02, 1.0), min_size=2, max_size=max_arms))
    return [(f"arm{i}", w / sum(raw)) for i, w in enumerate(raw)]


def reference_bucket(salt: str, unit_id: int | str) -> int:
    """The definition in docs/design.md, steps 1-3, with nothing but hashlib."""
    digest = hashlib.sha256(f"{salt}:{unit_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 10_000


def arm_of(table: pd.DataFrame) -> dict[object, str]:
    return dict(zip(table["unit_id"], table["variant"].astype(str), strict=True))


# --------------------------------------------------------------------------- the hash definition


@pytest.mark.parametrize(
    ("salt", "unit_id", "bucket"),
    [
        # printf '%s' 'spring-discount-2026:0' | sha256sum -> 67fb22c740ce4d80..., 0x67fb22c740ce4d80 % 10000
        ("spring-discount-2026", 0, 432),
        # printf '%s' 'spring-discount-2026:-7' | sha256sum -> 157e18e42752a2ba...
        ("spring-discount-2026", -7, 6458),
        # printf '%s' 'spring-discount-2026:cust-Zoë 42' | sha256sum (UTF-8 terminal) -> d584ea616e12d08e...
        ("spring-discount-2026", "cust-Zoë 42", 1054),
        # printf '%s' 'exp:18446744073709551615' | sha256sum -> aa5b888536b02e7c...
        ("exp", 2**64 - 1, 2620),
    ],
)
def test_bucket_matches_coreutils_sha256sum(salt, unit_id, bucket):
    assert reference_bucket(salt, unit_id) == bucket
    got = assign_units([unit_id, "other" if isinstance(unit_id, str) else 1], ARMS, salt).table
    assert got["bucket"].iloc[0] == bucket


@given(unit_ids=unit_id_lists, salt=salts)
def test_buckets_and_arms_match_a_plain_hashlib_computation(unit_ids, salt):
    table = assign_units(unit_ids, ARMS, salt, holdout=0.1).table
    ranges = bucket_ranges(ARMS, holdout=0.1)
    expected_buckets = [reference_bucket(salt, u) for u in unit_ids]
    expected_arms = [next(arm for arm, r in ranges.items() if b in r) for b in expected_buckets]
    assert table["unit_id"].tolist() == unit_ids
    assert table["bucket"].tolist() == expected_buckets
    assert table["variant"].astype(str).tolist() == expected_arms


def test_documented_sql_reproduces_the_buckets_in_duckdb():
    duckdb = pytest.importorskip("duckdb")
    assert SQL_BUCKET in assignment.__doc__
    salt = "spring-discount-2026"
    for unit_ids in (np.arange(-5_000, 5_000) * 7_919, [f"cust-{i}-é" for i in range(10_000)]):
        ours = assign_units(unit_ids, ARMS, salt).table
        units = pd.DataFrame({"unit_id": ours["unit_id"]})
        hi, lo = "('0x' || substr(hex, 1, 8))::BIGINT", "('0x' || substr(hex, 9, 8))::BIGINT"
        hi_lo = f"({hi} % 10000 * 7296 + {lo}) % 10000"
        sql = (
            f"SELECT {SQL_BUCKET.replace('salt', '$salt')} AS bucket, {hi_lo} AS portable "
            "FROM (SELECT unit_id, sha256($salt || ':' || CAST(unit_id AS VARCHAR)) AS hex FROM units)"
        )
        con = duckdb.connect()
        con.register("units", units)
        got = con.execute(sql, {"salt": salt}).df()
        assert got["bucket"].tolist() == ours["bucket"].tolist()
        assert got["portable"].tolist() == ours["bucket"].tolist()


def test_documented_example_ranges():
    ranges = bucket_ranges(ARMS, holdout=0.05)
    assert ranges == {
        "control": range(0, 2375),
        "pct15": range(2375, 4750),
        "save10": range(4750, 7125),
        "bogo": range(7125, 9500),
        HOLDOUT: range(9500, 10_000),
    }


@given(arms=arm_lists(), holdout=st.sampled_from([0.0, 0.00005, 0.05, 0.1, 0.3333, 0.5]))
def test_bucket_ranges_tile_the_buckets_with_rounded_cumulative_weights(arms, holdout):
    ranges = bucket_ranges(arms, holdout)
    held = int(np.floor(BUCKETS * holdout + 0.5))
    kept = BUCKETS - held
    assert [r.start for r in ranges.values()] == [0, *(r.stop for r in list(ranges.values())[:-1])]
    assert list(ranges.values())[-1].stop == BUCKETS
    assert len(ranges.get(HOLDOUT, range(0))) == held
    cumulative = np.cumsum([w for _, w in arms])
    for (name, weight), c in zip(arms, cumulative, strict=True):
        share = c / cumulative[-1]  # the documented c_k first, then B x c_k: ties at .5 depend on it
        assert ranges[name].stop == np.floor(kept * share + 0.5)
        assert abs(len(ranges[name]) - kept * weight) <= 1


def test_shares_are_the_bucket_shares():
    shares = assign_units(range(10), [("a", 1 / 3), ("b", 1 / 3), ("c", 1 / 3)], "s").shares
    assert shares == {"a": 0.3333, "b": 0.3334, "c": 0.3333}


# --------------------------------------------------------------------------- properties


@given(unit_ids=unit_id_lists, salt=salts, data=st.data())
def test_same_unit_and_salt_give_the_same_arm_in_any_order(unit_ids, salt, data):
    first = assign_units(unit_ids, ARMS, salt)
    shuffled = data.draw(st.permutations(unit_ids))
    again = assign_units(shuffled, ARMS, salt)
    assert arm_of(again.table) == arm_of(first.table)
    assert first.table.equals(assign_units(unit_ids, ARMS, salt).table)


@given(unit_ids=unit_id_lists, salt=salts, cut=st.integers(0, 200), holdout=st.sampled_from([0.0, 0.2]))
def test_adding_units_never_moves_existing_ones(unit_ids, salt, cut, holdout):
    old = unit_ids[: min(cut, len(unit_ids) - 1) + 1]
    before = arm_of(assign_units(old, ARMS, salt, holdout).table)
    after = arm_of(assign_units(unit_ids, ARMS, salt, holdout).table)
    assert {u: after[u] for u in old} == before


@given(arms=arm_lists(), salt=salts, holdout=st.sampled_from([0.0, 0.05]))
def test_arm_counts_are_within_binomial_bounds_of_the_shares(arms, salt, holdout):
    n = 20_000
    result = assign_units(np.arange(n), arms, salt, holdout)
    counts = result.table["variant"].value_counts()
    for label, share in result.shares.items():
        low, high = stats.binom.ppf(0.5e-6, n, share), stats.binom.isf(0.5e-6, n, share)
        assert low <= counts[label] <= high, (label, share, counts[label])


@pytest.mark.parametrize(
    ("salt_a", "salt_b"),
    [("spring-discount-2026", "spring-discount-2027"), ("base:0", "base:1"), ("a", "b")],
)
def test_assignments_under_different_salts_are_independent(salt_a, salt_b):
    unit_ids = np.arange(50_000)
    a = assign_units(unit_ids, ARMS, salt_a).table["variant"]
    b = assign_units(unit_ids, ARMS, salt_b).table["variant"]
    assert stats.chi2_contingency(pd.crosstab(a, b)).pvalue > 1e-4


def test_holdout_takes_the_top_buckets_and_its_share():
    n = 100_000
    table = assign_units(np.arange(n), ARMS, "spring-discount-2026", holdout=0.05).table
    held = table["variant"] == HOLDOUT
    assert (table.loc[held, "bucket"] >= 9_500).all()
    assert (table.loc[~held, "bucket"] < 9_500).all()
    assert stats.binom.ppf(1e-6, n, 0.05) <= held.sum() <= stats.binom.isf(1e-6, n, 0.05)
    assert list(table["variant"].cat.categories) == [*(a for a, _ in ARMS), HOLDOUT]


def test_id_types_render_as_documented():
    as_int = assign_units(pd.Series([3, 10**12], dtype="Int64"), ARMS, "s").table["bucket"].tolist()
    assert as_int == [reference_bucket("s", 3), reference_bucket("s", 10**12)]
    text = pd.Series(["a", "b"], dtype="category")
    assert assign_units(text, ARMS, "s").table["bucket"].tolist() == [
        reference_bucket("s", "a"),
        reference_bucket("s", "b"),
    ]


# --------------------------------------------------------------------------- stratified


@st.composite
def stratified_units(draw: st.DrawFn) -> pd.DataFrame:
    n = draw(st.integers(1, 300))
    segment = draw(st.lists(st.sampled_from(["a", "b", "c", None]), min_size=n, max_size=n))
    tier = draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    return pd.DataFrame({"unit_id": [f"u{i}" for i in range(n)], "segment": segment, "tier": tier})


@given(units=stratified_units(), arms=arm_lists(max_arms=4), salt=salts)
def test_stratified_block_counts_are_within_one_unit_of_the_weights(units, arms, salt):
    result = assign_stratified(units, arms, ["segment", "tier"], salt)
    assert result.method == "stratified"
    blocks = units.groupby(["segment", "tier"], dropna=False).ngroup()
    counts = pd.crosstab(blocks, result.table["variant"]).reindex(columns=[a for a, _ in arms], fill_value=0)
    for name, weight in arms:
        assert (abs(counts[name] - counts.sum(axis=1) * weight) < 1).all()


@given(units=stratified_units(), salt=salts, data=st.data())
def test_stratified_assignment_ignores_row_order(units, salt, data):
    order = data.draw(st.permutations(range(len(units))))
    arms = [("c", 0.5), ("t", 0.3), ("u", 0.2)]
    first = assign_stratified(units, arms, ["segment"], salt, holdout=0.1)
    again = assign_stratified(units.iloc[order], arms, ["segment"], salt, holdout=0.1)
    assert arm_of(again.table) == arm_of(first.table)


def test_stratified_rounding_is_unbiased_over_blocks():
    # 4,000 blocks of 3 units, 50/50: each block gives one arm 2 units. Plain rounding would give the
    # first arm 8,000 of 12,000; the random offset gives each arm 6,000 in expectation (sd ~32).
    units = pd.DataFrame({"unit_id": np.arange(12_000), "block": np.arange(12_000) // 3})
    result = assign_stratified(units, [("a", 0.5), ("b", 0.5)], ["block"], "s")
    assert abs((result.table["variant"] == "a").sum() - 6_000) < 6 * np.sqrt(4_000 * 0.25)
    assert result.shares == {"a": 0.5, "b": 0.5}


def test_stratified_holdout_is_the_hash_holdout():
    units = pd.DataFrame({"unit_id": np.arange(20_000), "segment": np.arange(20_000) % 7})
    plain = assign_units(units["unit_id"], ARMS, "s", holdout=0.05).table
    stratified = assign_stratified(units, ARMS, ["segment"], "s", holdout=0.05)
    assert (stratified.table["bucket"] == plain["bucket"]).all()
    assert ((stratified.table["variant"] == HOLDOUT) == (plain["variant"] == HOLDOUT)).all()
    assert stratified.shares[HOLDOUT] == 0.05
    assert stratified.shares["control"] == 0.95 * 0.25


# --------------------------------------------------------------------------- clusters


def test_every_cluster_has_one_arm_the_arm_of_its_id():
    rng = np.random.default_rng(3)
    units = pd.DataFrame(
        {"unit_id": np.arange(5_000), "store": rng.choice([f"s{i}" for i in range(60)], 5_000)}
    )
    result = assign_clusters(units, ARMS, "store", "spring", holdout=0.1)
    assert result.method == "cluster"
    per_store = result.table.groupby(units["store"])["variant"].agg(["nunique", "first"])
    assert (per_store["nunique"] == 1).all()
    by_id = arm_of(assign_units(list(per_store.index), ARMS, "spring", holdout=0.1).table)
    assert per_store["first"].astype(str).to_dict() == by_id
    assert (result.table["bucket"] == [reference_bucket("spring", s) for s in units["store"]]).all()


def test_stratified_clusters_are_dealt_within_blocks():
    units = pd.DataFrame({"unit_id": np.arange(3_000), "store": np.arange(3_000) % 45})
    units["region"] = units["store"] % 4
    result = assign_clusters(units, [("c", 0.5), ("t", 0.5)], "store", "s", strata=["region"])
    assert result.method == "cluster-stratified"
    per_store = result.table.groupby(units["store"])["variant"].agg(["nunique", "first"])
    assert (per_store["nunique"] == 1).all()
    per_region = pd.crosstab(per_store.index % 4, per_store["first"])
    sizes = per_region.sum(axis=1)
    assert (abs(per_region["c"] - sizes / 2) < 1).all()


def test_strata_varying_within_a_cluster_is_a_data_error():
    units = pd.DataFrame({"unit_id": [1, 2, 3], "store": ["a", "a", "b"], "region": ["n", "s", "n"]})
    with pytest.raises(DataError, match=r"units.store: strata 'region' must be constant .* cluster 'a'"):
        assign_clusters(units, ARMS, "store", "s", strata=["region"])


# --------------------------------------------------------------------------- rerandomisation


def _max_abs_smd(units: pd.DataFrame, table: pd.DataFrame, covariates: list[str]) -> float:
    frame = units[covariates].assign(arm=table["variant"].to_numpy())
    return float(standardised_mean_differences(frame, "arm", covariates, "control")["smd"].abs().max())


def _plain(units: pd.DataFrame, arms, strata: tuple[str, ...], salt: str) -> pd.DataFrame:
    """The method rerandomise wraps, run with one salt."""
    if strata:
        return assign_stratified(units, arms, strata, salt).table
    return assign_units(units["unit_id"], arms, salt).table


@pytest.mark.parametrize("strata", [(), ("segment",)])
def test_rerandomise_keeps_a_reproducible_best_balanced_salt(strata):
    rng = np.random.default_rng(7)
    n = 600
    units = pd.DataFrame(
        {
            "unit_id": np.arange(n),
            "pre_revenue": rng.lognormal(2, 1, n),
            "segment": rng.choice(["new", "loyal", "lapsed"], n),
        }
    )
    covariates, arms, tries = ["pre_revenue", "segment"], [("control", 0.5), ("pct15", 0.5)], 30
    chosen = rerandomise(units, arms, covariates, tries=tries, base_salt="exp", strata=strata)
    assert chosen.table.equals(_plain(units, arms, strata, chosen.salt))
    assert chosen.method == ("rerandomised-stratified" if strata else "rerandomised-hash")
    scores = [_max_abs_smd(units, _plain(units, arms, strata, f"exp:{i}"), covariates) for i in range(tries)]
    assert chosen.salt == f"exp:{int(np.argmin(scores))}"
    assert _max_abs_smd(units, chosen.table, covariates) == min(scores) <= scores[0]


def test_rerandomise_excludes_the_holdout_and_skips_degenerate_salts():
    units = pd.DataFrame({"unit_id": np.arange(8), "x": np.arange(8.0)})
    result = rerandomise(units, [("control", 0.5), ("t", 0.5)], ["x"], tries=10, base_salt="b", holdout=0.2)
    counts = result.table["variant"].value_counts()
    assert counts["control"] >= 2
    assert counts["t"] >= 2
    with pytest.raises(DataError, match="none of 1 salts gives every arm >= 2 values of each of 'x'"):
        rerandomise(units.iloc[:2], [("control", 0.5), ("t", 0.5)], ["x"], tries=1, base_salt="b")


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("unit_ids", "message"),
    [
        ([], "units.unit_id: no ids to assign"),
        (
            [1, 2, 2, 2, 3, 3],
            r"must be unique; 2 id\(s\) appear more than once \(3 extra row\(s\), e.g. 2, 3\)",
        ),
        (["a", "b", "a"], r"units.unit_id: must be unique; 1 id\(s\) appear more than once \(1 extra row"),
        ([1, "b"], "units.unit_id: must be all integers or all strings, got mixed-integer values"),
        (["a", None], r"units.unit_id: 1 missing ids \(rows 1, counted from 0\)"),
        (pd.Series([1, None, 3, None], dtype="Int64"), r"units.unit_id: 2 missing ids \(rows 1, 3"),
        ([1.0, 2.0], "got floating values"),
        ([True, False], "got boolean values"),
    ],
)
def test_bad_unit_ids_are_data_errors(unit_ids, message):
    with pytest.raises(DataError, match=message):
        assign_units(unit_ids, ARMS, "s")


def test_missing_columns_and_empty_frames_are_data_errors():
    units = pd.DataFrame({"unit_id": [1, 2], "segment": ["a", "b"]})
    with pytest.raises(
        DataError, match=r"units: missing column\(s\) 'tier'; columns are 'unit_id', 'segment'"
    ):
        assign_stratified(units, ARMS, ["segment", "tier"], "s")
    with pytest.raises(DataError, match=r"units: missing column\(s\) 'store'"):
        assign_clusters(units, ARMS, "store", "s")
    with pytest.raises(DataError, match=r"units: missing column\(s\) 'x'"):
        rerandomise(units, ARMS, ["x"], tries=2, base_salt="s")
    with pytest.raises(DataError, match=r"units\.unit_id: no ids to assign"):
        assign_stratified(units.iloc[:0], ARMS, ["segment"], "s")
    with pytest.raises(DataError, match=r"units\.customer: must be unique"):
        assign_clusters(units.assign(customer=1), ARMS, "segment", "s", unit_id_column="customer")


@pytest.mark.parametrize(
    ("arms", "holdout", "message"),
    [
        ([("a", 1.0)], 0.0, "arms: need at least 2, got 1"),
        ([("a", 0.5), ("a", 0.5)], 0.0, "arms: ids must be unique, got 'a' more than once"),
        ([("a", 0.5), ("b", 0.6)], 0.0, "arms: weights must sum to 1, got 1.1"),
        ([("a", 1.0), ("b", 0.0)], 0.0, "arms: weights must be positive"),
        (
            [("a", 0.99999), ("b", 0.00001)],
            0.0,
            r"arms: 'b' get no bucket of 10000; a weight must be >= 5e-05",
        ),
        ([("a", 0.5), ("b", 0.5)], 1.0, r"holdout: must be 0 or in \[5e-05, 0.99995\), got 1"),
        ([("a", 0.5), ("b", 0.5)], 0.99995, r"holdout: must be 0 or in \[5e-05, 0.99995\), got 0.99995"),
        ([("a", 0.5), ("b", 0.5)], float("nan"), "holdout: must be 0 or in .* got nan"),
        ([("a", 0.5), ("b", 0.5)], 0.00001, "holdout: must be 0 or in"),
        ([("holdout", 0.5), ("b", 0.5)], 0.1, "an arm is named 'holdout', the holdout's label"),
    ],
)
def test_bad_arms_or_holdout_are_value_errors(arms, holdout, message):
    with pytest.raises(ValueError, match=message):
        assign_units([1, 2], arms, "s", holdout)


def test_an_arm_named_holdout_is_fine_without_a_holdout():
    table = assign_units(range(100), [("holdout", 0.1), ("email", 0.9)], "winback").table
    assert set(table["variant"].cat.categories) == {"holdout", "email"}


def test_rerandomise_argument_errors():
    units = pd.DataFrame({"unit_id": [1, 2], "x": [1.0, 2.0]})
    with pytest.raises(ValueError, match="tries: must be >= 1, got 0"):
        rerandomise(units, ARMS, ["x"], tries=0, base_salt="s")
    with pytest.raises(ValueError, match=r"reference: must be one of the arms .* got 'ctrl'"):
        rerandomise(units, ARMS, ["x"], tries=2, base_salt="s", reference="ctrl")


@pytest.mark.parametrize("module", [assignment, balance])
def test_docstring_examples(module):
    assert doctest.testmod(module).failed == 0
