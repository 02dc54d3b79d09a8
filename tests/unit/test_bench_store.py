"""The store benchmark's clones: each a simulated state under a new id, nothing else
changed (a version 9 state keeps its id inside a zstandard frame, where replacing
bytes found nothing and every clone kept its template's id)."""

from __future__ import annotations

from models.account import dump_state, load_state
from models.simulator import SimConfig
from tests.unit.bench_loader import load_benchmark

store = load_benchmark("bench_store")
bench_state = load_benchmark("bench_state")


def test_each_clone_is_its_template_under_a_new_id() -> None:
    states = bench_state.simulated_states(SimConfig(accounts=3, days=10, seed=4), 8, 100)
    templates, ids = [dump_state(s) for s in states], [s.account_id for s in states]
    made = list(store.clones(templates, ids, 7))
    assert [a for a, _ in made] == [store.clone_id(i, ids) for i in range(7)]
    assert len({a for a, _ in made} | set(ids)) == 7 + len(ids)  # new and distinct
    for i, (new_id, raw) in enumerate(made):
        clone, template = load_state(raw), states[i % len(states)]
        assert clone.account_id == new_id and len(new_id) == len(template.account_id)
        clone.account_id = template.account_id
        assert clone == template
