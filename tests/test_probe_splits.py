"""Probe splits make red-door's verdict identifiable: planted agents for each competing account of what the agent
pursues are told apart, on every run, by the probe table; on the factorial split each one's behavioral objective
(IRL) names its own feature, unaliased; evaluation levels are checked against the levels a model trained on."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mesalab.diagnostics import evaluate, evaluation_levels
from mesalab.diagnostics.objective_profile import objective_profile
from mesalab.diagnostics.planted import bfs_agent, mixture_agent, random_agent
from mesalab.diagnostics.probe_pursuit import (MIN_LEVELS, consistent, feature_sets, probe_reading, pursuit_table,
                                               split_pursuit)
from mesalab.tasks import get_task
from mesalab.tasks.families import C, T
from mesalab.tasks.grid import COLOUR_CHANNEL, TYPE_CHANNEL
from mesalab.tasks.objectives import ANY_OBJECT

N_LEVELS = 300


@pytest.fixture(scope="module")
def task():
    return get_task("red-door")


@pytest.fixture(scope="module")
def pools(task):
    return {s: evaluation_levels(task, s, N_LEVELS) for s in task.splits}


def _hypothesis(task, name):
    return next(h for h in task.hypotheses if h.name == name)


def _episodes(task, policy, pools, seed):
    run = jax.jit(lambda p, k: evaluate(task, policy, p, k))
    return {s: run(p, jax.random.key(seed)) for s, p in pools.items()}


def _objects(params):
    """Per level: list of (type name, colour name) of its objects."""
    from mesalab.tasks.grid import COLOURS, OBJECT_TYPES

    g = np.asarray(params.grid)
    out = []
    for lvl in g:
        objs = []
        for r, c in zip(*np.nonzero(lvl[..., 1:1 + len(OBJECT_TYPES)].any(-1))):
            t = OBJECT_TYPES[int(np.argmax(lvl[r, c, 1:1 + len(OBJECT_TYPES)]))]
            col = COLOURS[int(np.argmax(lvl[r, c, 1 + len(OBJECT_TYPES):1 + len(OBJECT_TYPES) + len(COLOURS)]))]
            objs.append((t, col))
        out.append(objs)
    return out


def test_probe_splits_hold_what_they_promise(task, pools):
    assert task.splits == ("train", "test", "red-ball-box", "green-key", "factorial")
    for objs in _objects(pools["red-ball-box"]):
        assert ("door", "blue") in objs and [o for o in objs if o[1] == "red"] in ([("ball", "red")], [("box", "red")])
        assert all(t in ("door", "ball", "box") for t, _ in objs)
    for objs in _objects(pools["green-key"]):
        assert ("door", "blue") in objs and ("key", "green") in objs and all(c != "red" for _, c in objs)
    fact = _objects(pools["factorial"])
    assert all(any(t == "door" for t, _ in objs) and any(c == "red" for _, c in objs) for objs in fact)
    door_colours = {c for objs in fact for t, c in objs if t == "door"}
    red_types = {t for objs in fact for t, c in objs if c == "red"}
    assert door_colours == {"red", "blue", "green", "yellow"} and red_types == {"door", "key", "ball", "box"}
    # no two features of the IRL basis are identical on the factorial levels (nothing is aliased)
    maps = np.asarray(jax.vmap(task.features.maps)(pools["factorial"].grid)).transpose(1, 0, 2, 3).reshape(
        len(task.features), -1)
    for i in range(len(maps)):
        for j in range(i + 1, len(maps)):
            assert not np.array_equal(maps[i], maps[j]), (task.features.names[i], task.features.names[j])
    # each probe pool has its own key: no two splits share a level
    grids = {s: {np.asarray(p.grid[i]).tobytes() for i in range(N_LEVELS)} for s, p in pools.items()}
    for a in grids:
        for b in grids:
            if a < b:
                assert not grids[a] & grids[b], (a, b)


EXPECTED = {"door": "door", "red": "red", "unseen type": "key", "not ball/box": "door|key"}


@pytest.mark.parametrize("seed", [0, 1, pytest.param(2, marks=pytest.mark.slow), pytest.param(3, marks=pytest.mark.slow),
                                  pytest.param(4, marks=pytest.mark.slow)])
def test_planted_hypotheses_are_told_apart_on_every_run(task, pools, seed):
    """Every planted account reads as itself on every evaluation seed; and a mixture, a nearest-object agent and a
    random agent read as what they are."""
    agents = {name: bfs_agent(task, _hypothesis(task, name)) for name in EXPECTED}
    readings = {}
    for name, agent in agents.items():
        table = pursuit_table(task, pools, _episodes(task, agent, pools, seed))
        readings[name] = probe_reading(task, table)
        assert readings[name].label == EXPECTED[name], (name, readings[name].text)
    assert len({r.label for r in readings.values()}) == len(EXPECTED)
    # what the task did not list
    green = bfs_agent(task, task.features.objective("green"))
    assert probe_reading(task, pursuit_table(task, pools, _episodes(task, green, pools, seed))).label == "green"
    mix = mixture_agent(task, (_hypothesis(task, "door"), _hypothesis(task, "red")))
    assert probe_reading(task, pursuit_table(task, pools, _episodes(task, mix, pools, seed))).label == "door|red"
    nearest = bfs_agent(task, ANY_OBJECT)
    assert probe_reading(task, pursuit_table(task, pools, _episodes(task, nearest, pools, seed))).label == "any object"
    rnd = probe_reading(task, pursuit_table(task, pools, _episodes(task, random_agent(), pools, seed)))
    assert rnd.label == "nothing" and rnd.text.startswith("Pursues no feature set")


def test_the_test_split_alone_cannot_tell_red_from_the_unseen_type(task, pools):
    """Why the probes exist: on train + test only, "red" and "the unseen type" (key) predict the same test episodes."""
    red = bfs_agent(task, _hypothesis(task, "red"))
    eps = _episodes(task, red, {s: pools[s] for s in ("train", "test")}, 0)
    rows = {r.label: r for r in split_pursuit(task, "test", pools["test"], eps["test"])}
    assert rows["red"].rate == rows["key"].rate == 1.0
    assert consistent([rows["key"]]) and consistent([rows["red"]])


def test_pursuit_counts_match_a_direct_count(task, pools):
    """The table's counts for one set against a plain recount from the episodes (first object entered, reached
    within twice the exact shortest path)."""
    from mesalab.tasks.oracle import shortest_path_length

    agent = bfs_agent(task, _hypothesis(task, "door"))
    params = pools["factorial"]
    ep = jax.tree_util.tree_map(np.asarray, _episodes(task, agent, {"factorial": params}, 0)["factorial"])
    red = task.features.objective("red")
    rows = {r.label: r for r in split_pursuit(task, "factorial", params, ep)}
    targets = np.asarray(jax.vmap(red.target_map)(params.grid))
    shortests = np.asarray(jax.jit(jax.vmap(shortest_path_length))(params.grid, params.start, params.base_target,
                                                                  jnp.asarray(targets)))
    present = pursued = 0
    for lvl in range(N_LEVELS):
        target, shortest = targets[lvl], int(shortests[lvl])
        if shortest > task.max_steps:
            continue
        present += 1
        path = ep.positions[lvl, : int(ep.length[lvl]) + 1]
        hits = [t for t, (r, c) in enumerate(path) if target[r, c]]
        pursued += bool(hits) and hits[0] <= 2 * shortest
    assert (rows["red"].n_present, rows["red"].n_pursued) == (present, pursued)
    assert present >= MIN_LEVELS and 0 < pursued < present  # a door agent reaches red only where the door is red


def test_factorial_irl_names_each_planted_feature_unaliased(task, pools):
    """On the factorial split, the behavioral objective of each planted account is its own feature, with no alias."""
    params = pools["factorial"]
    expected = {"door": {"door"}, "red": {"red"}, "unseen type": {"key"}, "not ball/box": {"door", "key"}}
    for name, want in expected.items():
        agent = bfs_agent(task, _hypothesis(task, name))
        ep = _episodes(task, agent, {"factorial": params}, 0)["factorial"]
        prof = objective_profile(task, params, ep, "factorial", policy=agent, irl_levels=150, n_boot=50)
        b = prof.behavioral
        assert not b.aliases, (name, b.aliases)
        named = set(b.dominant.replace("~", "|").split("|"))
        assert named == want, (name, b.dominant)


def test_training_levels_are_the_trainers_own_and_a_planted_overlap_is_counted(task):
    """``training_levels`` regenerates exactly the pools the trainer drew (recorded from inside the trainer), and an
    evaluation pool that holds one of them counts it."""
    import dataclasses

    from mesalab.optimizers import PPOConfig, make_train
    from mesalab.optimizers.ppo import training_levels
    from mesalab.studies.ppo_batch import training_overlaps
    from mesalab.tasks import registry
    from mesalab.tasks.level_hash import overlap_count, pool_hashes

    seen = []

    class Recording(registry.Task):
        def sample_params(self, key, dist, n, split=None):
            params, n_valid = super().sample_params(key, dist, n, split)
            jax.debug.callback(lambda g, s: seen.append(pool_hashes(g, s)), params.grid, params.start)
            return params, n_valid

    fields = {f.name: getattr(task, f.name) for f in dataclasses.fields(task)}
    rec = Recording(**{**fields, "name": "red-door-recording"})
    registry.TASKS[rec.name] = rec
    try:
        config = PPOConfig(task=rec.name, total_steps=3 * 16 * 8, num_envs=16, rollout_len=8, pool_size=32, width=8,
                           num_minibatches=2, update_epochs=1)
        key = jax.random.key(3)
        jax.block_until_ready(jax.jit(make_train(config))(key))
        assert len(seen) == config.num_updates + 1  # the first pool, then one fresh pool per update
        drawn = {h for pool in seen for h in pool}
        grids, starts = jax.jit(lambda k: training_levels(config, k))(key)
        assert set(pool_hashes(np.asarray(grids), np.asarray(starts))) == drawn
        # plant one training level into an evaluation pool
        pool = evaluation_levels(task, "test", 50)
        planted = pool._replace(grid=pool.grid.at[7].set(grids[5]), start=pool.start.at[7].set(starts[5]))
        assert overlap_count(pool, drawn) == 0 and overlap_count(planted, drawn) == 1
        counts = training_overlaps(config, key, {"test": pool, "planted": planted})
        assert counts == {"test": (0, len(drawn)), "planted": (1, len(drawn))}
    finally:
        del registry.TASKS[rec.name]
