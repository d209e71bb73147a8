"""Mix Distillation selection: exact counts, determinism, nesting, union constraints, the mixture artifact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from mixgap.core.errors import ConfigError
from mixgap.stages.data import DataError
from mixgap.stages.mix import (
    build_mixture,
    mixture_spec,
    problem_set_key,
    read_mixture,
    select,
    strong_count,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
STRONG, WEAK = FIXTURES / "mix_strong_pool", FIXTURES / "mix_weak_pool"


def ids(n: int, prefix: str = "q") -> list[str]:
    return [f"{prefix}{i:02d}" for i in range(n)]


def mix_cfg(weight: float, problems: str = "intersection", seed: int = 0):
    return OmegaConf.create({"weight": weight, "problems": problems, "seed": seed})


@pytest.mark.parametrize(
    ("weight", "n", "k"),
    [
        (0.2, 7, 1),  # 1.4 -> 1
        (0.5, 5, 3),  # 2.5 -> 3 (banker's round would give 2)
        (0.5, 7, 4),  # 3.5 -> 4
        (0.5, 13, 7),  # 6.5 -> 7 (banker's round would give 6)
        (0.2, 13, 3),  # 2.6 -> 3
        (0.58, 25, 15),  # 14.5 exactly; float arithmetic gives 14.4999... -> 14
        (0.0, 7, 0),
        (1, 7, 7),
    ],
)
def test_strong_count_rounds_half_up(weight, n, k):
    assert strong_count(weight, n) == k


# hand-computed floor(w*N + 0.5) for awkward pool sizes
EXPECTED = {1: [0, 0, 1, 1], 7: [0, 1, 4, 7], 13: [0, 3, 7, 13]}


@pytest.mark.parametrize("n", sorted(EXPECTED))
@pytest.mark.parametrize(("col", "weight"), list(enumerate([0.0, 0.2, 0.5, 1.0])))
def test_select_exact_counts_on_the_shared_problems(n, col, weight):
    shared = ids(n)
    strong_pool = shared + ["only_strong_a", "only_strong_b"]
    weak_pool = ["only_weak"] + shared[::-1]
    chosen, strong = select(strong_pool, weak_pool, weight, seed=3, mode="intersection")
    assert chosen == sorted(shared)
    assert len(strong) == EXPECTED[n][col]
    assert strong <= set(shared)


def test_select_is_deterministic_and_depends_on_the_seed():
    a = select(ids(13), ids(13), 0.5, seed=0, mode="intersection")
    b = select(ids(13)[::-1], ids(13), 0.5, seed=0, mode="intersection")  # pool order does not matter
    c = select(ids(13), ids(13), 0.5, seed=1, mode="intersection")
    assert a == b
    assert a[1] != c[1]
    assert len(c[1]) == 7


@pytest.mark.parametrize("seed", [0, 1, 7])
@pytest.mark.parametrize("mode", ["intersection", "union"])
def test_strong_sets_are_nested_across_weights(seed, mode):
    strong_pool, weak_pool = ids(13) + ["s_only"], ids(13) + ["w_only"]
    weights = [0.1, 0.2, 0.4, 0.6, 0.8, 0.9]  # union N=15: k from 2 to 14 stays feasible (1 <= k <= 14)
    sets = [select(strong_pool, weak_pool, w, seed, mode)[1] for w in weights]
    for smaller, larger in zip(sets, sets[1:], strict=False):
        assert smaller <= larger
    assert [len(s) for s in sets] == [strong_count(w, 13 if mode == "intersection" else 15) for w in weights]


def test_union_forces_single_pool_problems_and_counts_exactly():
    strong_pool, weak_pool = ["a", "b", "c", "d", "s1", "s2"], ["a", "b", "c", "d", "w1"]
    chosen, strong = select(strong_pool, weak_pool, 0.5, seed=0, mode="union")
    assert chosen == ["a", "b", "c", "d", "s1", "s2", "w1"]  # N = 7, k = floor(3.5 + 0.5) = 4
    assert len(strong) == 4
    assert {"s1", "s2"} <= strong and "w1" not in strong
    assert len(set(chosen)) == len(chosen)


@pytest.mark.parametrize("weight", [0.0, 0.2, 1.0])
def test_union_infeasible_weight_names_the_field_and_range(weight):
    # N = 7: 2 only-strong (k >= 2), 1 only-weak (k <= 6); w=0 -> k=0, 0.2 -> 1, 1 -> 7 are infeasible
    with pytest.raises(ConfigError, match=r"mix\.weight=.* use mix\.weight in \[0\.2857, 0\.8571\]"):
        select(["a", "b", "c", "d", "s1", "s2"], ["a", "b", "c", "d", "w1"], weight, seed=0, mode="union")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"weight": 1.5, "mode": "intersection"}, r"mix\.weight=1\.5 .* \[0, 1\]"),
        ({"weight": -0.1, "mode": "intersection"}, r"mix\.weight=-0\.1"),
        ({"weight": 0.2, "mode": "all"}, r"mix\.problems='all' .* intersection, union"),
    ],
)
def test_select_rejects_bad_config_values(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        select(ids(5), ids(5), seed=0, **kwargs)


def test_select_rejects_a_pool_with_a_repeated_id():
    with pytest.raises(ValueError, match="strong pool lists a problem id more than once"):
        select(["a", "a", "b"], ["a", "b"], 0.5, 0, "intersection")


def test_mixture_spec_keys_weight_as_a_float_and_problem_set_ignores_weight_and_seed():
    assert mixture_spec(mix_cfg(1), "pool-s", "pool-w").key == mixture_spec(mix_cfg(1.0), "pool-s", "pool-w").key
    assert mixture_spec(mix_cfg(0.2), "pool-s", "pool-w").key != mixture_spec(mix_cfg(0.4), "pool-s", "pool-w").key
    spec = mixture_spec(mix_cfg(0.2, seed=5), "pool-s", "pool-w")
    assert spec.inputs == ("pool-s", "pool-w")
    assert dict(spec.fields) == {"weight": 0.2, "problems": "intersection", "seed": 5}
    keys = {problem_set_key(mix_cfg(w, seed=s), "pool-s", "pool-w") for w in (0, 0.2, 1) for s in (0, 1)}
    assert len(keys) == 1
    assert problem_set_key(mix_cfg(0.2, "union"), "pool-s", "pool-w") not in keys
    assert problem_set_key(mix_cfg(0.2), "pool-w", "pool-s") not in keys  # strong before weak


def read_rows(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "mixture.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(("weight", "pool"), [(0.0, WEAK), (1.0, STRONG)])
def test_pure_weights_equal_the_pure_pool_on_the_shared_problems(tmp_path, weight, pool):
    counts = build_mixture(STRONG, WEAK, mix_cfg(weight), tmp_path)["counts"]
    shared = [f"p{i}" for i in range(1, 8)]
    expected = {r["id"]: r for r in map(json.loads, (pool / "pool.jsonl").read_text().splitlines())}
    rows = read_rows(tmp_path)
    assert [r["id"] for r in rows] == shared
    assert [r["response"] for r in rows] == [expected[i]["response"] for i in shared]
    assert counts["N"] == 7 and counts["problem_ids"] == shared
    assert counts["strong"] == (7 if weight else 0) and counts["weak"] == (0 if weight else 7)
    # strong tokens 100..160, weak 10..16 on p1..p7
    assert counts["tokens"] == ({"strong": 910, "weak": 0} if weight else {"strong": 0, "weak": 91})


def test_mixture_rows_sources_and_token_totals(tmp_path):
    counts = build_mixture(STRONG, WEAK, mix_cfg(0.5, seed=2), tmp_path)["counts"]
    rows = read_rows(tmp_path)
    strong = [r for r in rows if r["source"] == "strong"]
    assert counts["N"] == 7 and counts["strong"] == 4 and counts["weak"] == 3
    assert all(r["teacher"] == "long_t" for r in strong)
    assert all(r["teacher"] == "short_t" for r in rows if r["source"] == "weak")
    tokens = {r["id"]: r["completion_tokens"] for r in rows}
    assert counts["tokens"]["strong"] == sum(tokens[r["id"]] for r in strong)
    assert counts["tokens"]["strong"] + counts["tokens"]["weak"] == sum(tokens.values())
    assert counts["strong_ids"] == sorted(r["id"] for r in strong)
    problems = read_mixture(tmp_path)
    assert [p.id for p in problems] == [r["id"] for r in rows]
    assert problems[0].meta == {k: rows[0][k] for k in ("response", "source", "teacher", "completion_tokens")}


def test_union_mixture_keeps_single_pool_problems_with_their_pool(tmp_path):
    counts = build_mixture(STRONG, WEAK, mix_cfg(0.5, "union"), tmp_path)["counts"]
    by_id = {r["id"]: r for r in read_rows(tmp_path)}
    assert counts["N"] == 10 and counts["strong"] == 5  # floor(5 + 0.5)
    assert by_id["s1"]["source"] == by_id["s2"]["source"] == "strong"
    assert by_id["w1"]["source"] == "weak"


def test_mixture_without_token_counts_reports_none_and_characters(tmp_path):
    strong = tmp_path / "strong"
    strong.mkdir()
    rows = [json.loads(line) for line in (STRONG / "pool.jsonl").read_text().splitlines()]
    (strong / "pool.jsonl").write_text("".join(json.dumps({**r, "completion_tokens": None}) + "\n" for r in rows))
    counts = build_mixture(strong, WEAK, mix_cfg(1.0), tmp_path / "out")["counts"]
    assert counts["tokens"]["strong"] is None
    assert counts["chars"]["strong"] == sum(len(r["response"]) for r in rows[:7])


def test_the_weight_is_keyed_to_six_decimals_so_weights_selecting_the_same_problems_share_a_key():
    near = mixture_spec(mix_cfg(0.2000001), "pool-s", "pool-w")
    assert near.key == mixture_spec(mix_cfg(0.2), "pool-s", "pool-w").key and near.fields["weight"] == 0.2
    assert mixture_spec(mix_cfg(0.200001), "pool-s", "pool-w").key != near.key  # a sixth decimal is a new weight
    # N = 211 shared problems: floor(0.2 * 211 + 0.5) = floor(42.7) = 42 strong examples at both weights
    assert len(select(ids(211), ids(211), 0.2, 0, "intersection")[1]) == 42
    assert len(select(ids(211), ids(211), 0.2000001, 0, "intersection")[1]) == 42


def test_a_mixture_of_no_problems_is_an_error_naming_both_pools(tmp_path):
    """An empty pool (an empty import, a teacher that solved nothing) leaves nothing to train on: an error, never a
    finished mixture of 0 examples."""
    empty = tmp_path / "empty_pool"
    empty.mkdir()
    (empty / "pool.jsonl").write_text("")
    with pytest.raises(DataError) as err:
        build_mixture(empty, WEAK, mix_cfg(0.2), tmp_path / "out")
    weak = len(WEAK.joinpath("pool.jsonl").read_text().splitlines())
    assert str(err.value) == (f"the mixture has no problems: the strong pool keeps 0 and the weak pool {weak} "
                              "(mix.problems=intersection); see the pools' manifests (tried, kept, drops by reason)")
    assert not (tmp_path / "out" / "mixture.jsonl").exists()
