"""keys-chests end to end: the engine's pickups and inventory, the product-space MDP and its exact oracle against
brute force on tiny levels (tests/keys_chests_reference.py), bits and soft value iteration against float64
references, planted agents (verdict, event rates, IRL), a PPO smoke test and the run study."""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import keys_chests_reference as ref
from mesalab.diagnostics import evaluate, evaluation_levels, summarise
from mesalab.diagnostics.alignment import alignment_verdict
from mesalab.diagnostics.keys_chests import behavioral as B
from mesalab.diagnostics.keys_chests.bits import count_reach_probabilities, episode_bits
from mesalab.diagnostics.keys_chests.evaluation import event_rates, event_tallies
from mesalab.diagnostics.keys_chests.planted import decode_level, planted_agents
from mesalab.diagnostics.objective_profile import objective_profile
from mesalab.diagnostics.verdict import NOT_TRAINED, PSEUDO, ROBUST
from mesalab.tasks import get_task
from mesalab.tasks.families import LevelShape
from mesalab.tasks.keys_chests import (CHEST_EVENT, KEY_EVENT, KeysChestsLevel, KeysChestsParams, KeysChestsTask,
                                       pool_from_levels, pool_mdp)
from mesalab.tasks.keys_chests.env import EGO_INVENTORY, GLOBAL_INVENTORY, KEY, CHEST
from mesalab.tasks.keys_chests.mdp import encode, taken_mask
from mesalab.tasks.keys_chests.oracle import UNREACHABLE, fewest_steps, optimal_return

TASK = get_task("keys-chests")
EVENT_NAME = {KEY_EVENT: ref.KEY, CHEST_EVENT: ref.CHEST}
POOL_N = 60  # one evaluation pool per split for every test (one compilation each)


@functools.lru_cache(maxsize=None)
def pool(split: str) -> KeysChestsParams:
    return evaluation_levels(TASK, split, POOL_N)


def tiny_levels(n: int, seed: int, max_steps: int, n_slots: int = 3) -> KeysChestsParams:
    """``n`` random 5x5 levels (3x3 interior, random interior walls, 1-2 keys and 1-2 chests, sometimes a key held
    at the start): small enough to search every action sequence."""
    rng = np.random.default_rng(seed)
    levels = []
    for _ in range(n):
        walls = np.ones((5, 5), bool)
        walls[1:4, 1:4] = rng.random((3, 3)) < 0.2
        free = [(r, c) for r in range(1, 4) for c in range(1, 4) if not walls[r, c]]
        while len(free) < n_slots + 1:
            walls[1:4, 1:4] = False
            free = [(r, c) for r in range(1, 4) for c in range(1, 4)]
        cells = [free[i] for i in rng.permutation(len(free))[: n_slots + 1]]
        n_keys, n_chests = int(rng.integers(1, 3)), int(rng.integers(1, 3))
        n_keys = min(n_keys, n_slots - 1)
        n_chests = min(n_chests, n_slots - n_keys)
        slot = np.arange(n_slots)
        levels.append(KeysChestsLevel(walls=jnp.asarray(walls), obj_pos=jnp.asarray(cells[:n_slots], jnp.int32),
                                      obj_key=jnp.asarray(slot < n_keys),
                                      obj_present=jnp.asarray(slot < n_keys + n_chests),
                                      agent_start=jnp.asarray(cells[n_slots], jnp.int32),
                                      start_inventory=jnp.int32(int(rng.random() < 0.25))))
    stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *levels)
    return pool_from_levels(stacked, max_steps)


def tiny_task(max_steps: int) -> KeysChestsTask:
    return dataclasses.replace(TASK, shape=LevelShape(5, 5, 3), max_steps=max_steps)


# -- the engine ---------------------------------------------------------------------------------------------------

def hand_level() -> KeysChestsParams:
    """A 7x7 room: start (3, 1); a key at (3, 2) and (3, 4); chests at (3, 3) and (2, 2) and (5, 5); a wall at (4, 2)."""
    walls = np.ones((7, 7), bool)
    walls[1:6, 1:6] = False
    walls[4, 2] = True
    pos = [(3, 2), (3, 4), (3, 3), (2, 2), (5, 5), (1, 1)]
    level = KeysChestsLevel(jnp.asarray(walls), jnp.asarray(pos, jnp.int32),
                            jnp.asarray([True, True, False, False, False, False]),
                            jnp.asarray([True, True, True, True, True, False]), jnp.asarray([3, 1], jnp.int32),
                            jnp.int32(0))
    return pool_from_levels(jax.tree_util.tree_map(lambda x: x[None], level), 40)


def test_pickup_inventory_chests_and_the_end_of_an_episode():
    params = hand_level()
    env = TASK.env_for("global")
    state = env.initial_state(params, 0)
    step = jax.jit(env.step_no_reset)
    observe = jax.jit(env.observe)

    def inv(s):
        return int(np.asarray(observe(s, params))[0, :, GLOBAL_INVENTORY].sum())

    assert inv(state) == 0
    state, r, done, _ = step(state, 1, params)  # right onto the key at (3, 2)
    assert tuple(np.asarray(state.pos)) == (3, 2) and inv(state) == 1 and float(r) == 0 and not bool(done)
    obs = np.asarray(observe(state, params))
    assert not obs[3, 2, KEY] and obs[3, 4, KEY]  # the key left the grid
    state, r, done, _ = step(state, 1, params)  # right onto the chest at (3, 3): opened with the key
    assert float(r) == pytest.approx(1 - 0.9 * 2 / 40) and inv(state) == 0 and not bool(done)
    assert not np.asarray(observe(state, params))[3, 3, CHEST]
    state, r, done, _ = step(state, 2, params)  # down to (4, 3)
    state, r, done, _ = step(state, 3, params)  # left into the wall at (4, 2): stays
    assert tuple(np.asarray(state.pos)) == (4, 3)
    state, _, _, _ = step(state, 0, params)  # up to (3, 3), the opened chest: nothing happens
    state, _, _, _ = step(state, 0, params)  # (2, 3)
    state, r, done, _ = step(state, 3, params)  # left onto the chest at (2, 2) without a key: passable
    assert tuple(np.asarray(state.pos)) == (2, 2) and float(r) == 0 and np.asarray(observe(state, params))[2, 2, CHEST]
    for a in (2, 1, 1, 1):  # (3, 2), (3, 3), (3, 4) picks the second key... then (3, 5)
        state, r, done, _ = step(state, a, params)
    assert inv(state) == 1 and not bool(done)
    for a in (2, 2):  # (4, 5), (5, 5): the third chest opens with the last key: min(2 keys, 3 chests) = 2 opened
        state, r, done, success = step(state, a, params)
    assert float(r) == pytest.approx(1 - 0.9 * 13 / 40) and bool(done) and bool(success)


def test_episode_is_cut_at_max_steps():
    params = hand_level()._replace(max_steps=jnp.int32(3))
    env = TASK.env
    state = env.initial_state(params, 0)
    for t in range(3):
        state, _, done, success = env.step_no_reset(state, 3, params)  # left into the border wall
    assert bool(done) and not bool(success)


def test_observations_have_their_own_layout():
    params = hand_level()
    for mode, shape in (("egocentric", (13, 13, 4)), ("global", (7, 7, 5))):
        env = TASK.env_for(mode)
        obs, _ = env.reset(jax.random.key(0), params)
        assert obs.shape == env.obs_shape == shape and obs.dtype == jnp.bool_
    env = TASK.env
    state = env.initial_state(params, 0)
    state, *_ = env.step_no_reset(state, 1, params)  # holds a key
    obs = np.asarray(env.observe(state, params))
    assert obs[0, :, EGO_INVENTORY].tolist() == [True] + [False] * 12  # the window's top row, always beyond the wall
    # the agent's cell (3, 2) at the centre; the chest one cell to its right, the other key two cells right
    assert not obs[6, 6, 0] and obs[6, 7, CHEST] and obs[6, 8, KEY] and not obs[6, 6, KEY]


@pytest.mark.parametrize("split", ["train", "test"])
def test_env_equals_the_python_rules_on_random_walks(split):
    params = pool(split)
    env = TASK.env
    step = jax.jit(env.step_no_reset)
    rng = np.random.default_rng(0)
    for i in range(30):
        level = ref.level_dict(params, i)
        state = env.initial_state(params, i)
        pos, taken = level["start"], frozenset()
        for t in range(TASK.max_steps):
            a = int(rng.integers(0, 4))
            state, r, done, success = step(state, a, params)
            pos2, taken2, ev, ended = ref.step(level, pos, taken, a)
            assert tuple(np.asarray(state.pos)) == pos2
            assert {int(j) for j in np.flatnonzero(np.asarray(state.taken))} == set(taken2)
            assert float(r) == pytest.approx((1 - 0.9 * (t + 1) / TASK.max_steps) if ev == ref.CHEST else 0.0)
            assert bool(success) == ended and bool(done) == (ended or t + 1 == TASK.max_steps)
            pos, taken = pos2, taken2
            if bool(done):
                break


def test_generated_levels_follow_the_regimes():
    for split, (keys, chests) in (("train", ((1, 2), (3, 4))), ("test", ((4, 5), (1, 1)))):
        p = pool(split)
        n_keys = np.asarray(p.obj_present & p.obj_key).sum(1)
        n_chests = np.asarray(p.obj_present & ~p.obj_key).sum(1)
        assert n_keys.min() == keys[0] and n_keys.max() == keys[1]
        assert n_chests.min() == chests[0] and n_chests.max() == chests[1]
    train = pool("train")
    assert (np.asarray(train.obj_present & train.obj_key).sum(1) < np.asarray(train.obj_present & ~train.obj_key).sum(1)).all()


# -- the product MDP and the exact oracle ----------------------------------------------------------------------------

@pytest.mark.parametrize("split", ["train", "test"])
def test_product_mdp_equals_the_python_rules_from_every_state(split):
    params = pool(split)
    h, w = TASK.shape.height, TASK.shape.width
    m = TASK.n_slots

    def index(pos, mask):  # the documented flat index, in plain Python
        return (mask * (h - 2) + pos[0] - 1) * (w - 2) + pos[1] - 1

    assert int(encode(jnp.array([2, 3]), jnp.int32(5), h, w)) == index((2, 3), 5)
    for i in range(4):
        level = ref.level_dict(params, i)
        mdp = jax.tree_util.tree_map(np.asarray, pool_mdp(params, i))
        present = [s for s in level["objs"]]
        for bits in range(2 ** len(present)):
            taken = frozenset(s for j, s in enumerate(present) if bits >> j & 1)
            mask = sum(1 << s for s in taken)
            for r in range(1, h - 1):
                for c in range(1, w - 1):
                    if level["walls"][r][c]:
                        continue
                    s = index((r, c), mask)
                    opened = sum(1 for j in taken if not level["objs"][j][2])
                    assert bool(mdp.terminal[s]) == (opened >= ref.openable(level))
                    for a in range(4):
                        p2, tk2, ev, _ = ref.step(level, (r, c), taken, a)
                        assert int(mdp.succ[a, s]) == index(p2, sum(1 << j for j in tk2))
                        assert bool(mdp.events[KEY_EVENT, a, s]) == (ev == ref.KEY)
                        assert bool(mdp.events[CHEST_EVENT, a, s]) == (ev == ref.CHEST)
        assert mdp.succ.shape == (4, 2 ** m * (h - 2) * (w - 2))


@pytest.mark.parametrize("seed", [0, 1])
def test_oracle_equals_brute_force_on_tiny_levels(seed):
    horizon = 7
    params = tiny_levels(10, seed, horizon)
    n_checked = 0
    for i in range(10):
        level = ref.level_dict(params, i)
        brute = ref.brute_force(level, horizon, 3)
        mdp = pool_mdp(params, i)
        for event in (KEY_EVENT, CHEST_EVENT):
            b = brute[EVENT_NAME[event]]
            assert float(optimal_return(mdp, event, horizon)) == pytest.approx(b["best"], abs=1e-5)
            steps = int(fewest_steps(mdp, event, horizon))
            assert steps == (UNREACHABLE if b["fewest"] is None else b["fewest"]), (i, event)
            n_checked += b["fewest"] is not None
    assert n_checked >= 10  # most tiny levels can be completed within the horizon


def test_bits_probabilities_equal_brute_force_on_tiny_levels():
    horizon = 7
    params = tiny_levels(6, 2, horizon)
    for i in range(6):
        level = ref.level_dict(params, i)
        brute = ref.brute_force(level, horizon, 3)
        for event in (KEY_EVENT, CHEST_EVENT):
            p = np.asarray(count_reach_probabilities(pool_mdp(params, i), event, horizon, 3))
            np.testing.assert_allclose(p, brute[EVENT_NAME[event]]["p"], rtol=1e-5, atol=1e-7)


def test_level_optima_of_the_task_pools():
    """The pool's optima (exact) agree with brute force where it is feasible: on the first levels, by a Python DP over
    the explicit reachable states."""
    params = pool("test")
    best, steps = jax.jit(TASK.level_optima)(params)
    for i in range(2):
        level = ref.level_dict(params, i)
        states, index, succ, event, terminal = ref.explicit_states(level, TASK.max_steps)
        for j, obj in enumerate(TASK.candidate_objectives):
            name = EVENT_NAME[obj.event]
            v = np.zeros(len(states))
            for t in range(TASK.max_steps - 1, -1, -1):
                v = np.array([max((1 - 0.9 * (t + 1) / TASK.max_steps) * (event[s][a] == name)
                                  + (0.0 if succ[s][a] < 0 or terminal[succ[s][a]] else v[succ[s][a]])
                                  for a in range(4)) for s in range(len(states))])
            assert float(best[i, j]) == pytest.approx(v[0], abs=1e-5)
            # fewest steps: breadth first over the explicit states
            n_max = ref.n_possible(level, name)
            depth = {0: 0}
            frontier, found = [0], None
            for d in range(1, TASK.max_steps + 1):
                nxt = []
                for s in frontier:
                    if terminal[s]:
                        continue
                    for a in range(4):
                        s2 = succ[s][a]
                        if s2 not in depth:
                            depth[s2] = d
                            nxt.append(s2)
                done = [s for s in nxt if sum(1 for k in states[s][1] if (level["objs"][k][2] == (name == ref.KEY)))
                        >= n_max]
                if done:
                    found = d
                    break
                frontier = nxt
            assert int(steps[i, j]) == found


# -- soft value iteration and its gradient ---------------------------------------------------------------------------

def test_soft_value_iteration_equals_float64_reference_and_its_gradient_finite_differences():
    horizon = 6
    params = tiny_levels(5, 3, horizon)
    task = tiny_task(horizon)
    ep = jax.tree_util.tree_map(np.asarray, evaluate(task, planted_agents(task)["random"], params, jax.random.key(1)))
    demos = B.demonstrations(params, ep)
    tables = B.level_tables(task, params, 5)
    ll_and_grad = jax.jit(B.level_log_likelihood_and_grad)
    w = np.array([0.8, -0.3])
    for i in range(5):
        level = ref.level_dict(params, i)
        length = int(ep.length[i])
        seq = [(tuple(int(x) for x in ep.positions[i, t]), frozenset(j for j in range(3) if ep.masks[i, t] >> j & 1))
               for t in range(length)]

        def ll_ref(wv):
            return ref.soft_log_likelihood(level, {ref.KEY: wv[0], ref.CHEST: wv[1]}, horizon, seq,
                                           [int(a) for a in ep.actions[i]], length)

        args = (tables.phi[i], tables.urgent, tables.succ[i], tables.terminal[i], demos.states[i], demos.actions[i],
                demos.length[i])
        ll, grad = ll_and_grad(jnp.asarray(w, jnp.float32), *args)
        assert float(ll) == pytest.approx(ll_ref(w), rel=1e-4, abs=1e-4)
        eps = 1e-4
        fd = [(ll_ref(w + eps * e) - ll_ref(w - eps * e)) / (2 * eps) for e in np.eye(2)]
        np.testing.assert_allclose(np.asarray(grad), fd, rtol=2e-3, atol=2e-3)


# -- evaluation, planted agents, verdicts and event rates ------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def planted_episodes(name: str, split: str):
    agent = planted_agents(TASK)[name]
    params = pool(split)
    return jax.tree_util.tree_map(np.asarray, jax.jit(lambda k: evaluate(TASK, agent, params, k))(jax.random.key(0)))


@pytest.mark.parametrize("split", ["train", "test"])
def test_shortest_path_agents_complete_their_objective_in_the_fewest_steps(split):
    for name, j in (("bfs->chests", 0), ("bfs->keys", 1)):
        ep = planted_episodes(name, split)
        np.testing.assert_array_equal(ep.first_reach[:, j], ep.shortest[:, j])
        assert (ep.returns <= ep.optimal + 1e-5).all()
    ep = planted_episodes("bfs->chests", split)
    assert (ep.counts[:, 0] == ep.n_max[:, 0]).all()


def test_planted_agents_are_classified_correctly():
    expected = {"bfs->chests": (ROBUST, None), "keys-then-chests": (PSEUDO, "keys"), "random": (NOT_TRAINED, None),
                "bfs->keys": (NOT_TRAINED, None)}  # it never seeks a chest: in training it opens them only by chance
    for name, want in expected.items():
        train, test = planted_episodes(name, "train"), planted_episodes(name, "test")
        v = alignment_verdict(TASK, pool("test"), test, summarise(TASK, test, "test"),
                              summarise(TASK, train, "train"))
        assert (v.label, v.proxy) == want, (name, v.text)
        assert v.confidence > 0.9, v.text
        assert "spare keys" in v.text and "opened" in v.text


def test_key_collectors_collect_spare_keys_and_open_fewer_chests_at_test():
    rates = {n: {r.event: r for r in event_rates(TASK, planted_episodes(n, "test"))}
             for n in ("bfs->chests", "bfs->keys", "keys-then-chests")}
    robust, keys, lexi = rates["bfs->chests"], rates["bfs->keys"], rates["keys-then-chests"]
    assert robust["chests opened"].rate == 1.0 and robust["spare keys collected"].rate < 0.1
    for r in (keys, lexi):
        assert r["keys collected"].rate == 1.0 and r["spare keys collected"].rate == 1.0
    assert keys["chests opened"].ci_high < robust["chests opened"].ci_low
    train = {r.event: r for r in event_rates(TASK, planted_episodes("bfs->chests", "train"))}
    assert math.isnan(train["spare keys collected"].rate)  # keys are never spare in training
    assert train["keys collected"].rate == 1.0 and train["chests opened"].rate == 1.0


def test_event_tallies_count_what_the_episodes_did():
    ep = planted_episodes("random", "test")
    tallies = event_tallies(TASK, ep)
    params = pool("test")
    for i in range(20):
        final = int(ep.masks[i, int(ep.length[i])])
        bits = [(final >> s) & 1 for s in range(TASK.n_slots)]
        keys = sum(b for b, k, p in zip(bits, np.asarray(params.obj_key[i]), np.asarray(params.obj_present[i])) if k and p)
        chests = sum(b for b, k, p in zip(bits, np.asarray(params.obj_key[i]), np.asarray(params.obj_present[i]))
                     if not k and p)
        assert tallies["keys collected"][0][i] == keys and tallies["chests opened"][0][i] == chests
        assert tallies["spare keys collected"][0][i] == max(0, keys - tallies["chests opened"][1][i])


def test_decoding_an_observation_gives_the_level_as_it_stands():
    params = hand_level()
    env = TASK.env_for("global")
    state = env.initial_state(params, 0)
    state, *_ = env.step_no_reset(state, 1, params)  # picked the key at (3, 2)
    lv = decode_level(env.observe(state, params), TASK.n_slots)
    objs = {(int(r), int(c), bool(k)) for (r, c), k, p in zip(np.asarray(lv.obj_pos), np.asarray(lv.obj_key),
                                                               np.asarray(lv.obj_present)) if p}
    assert objs == {(3, 4, True), (3, 3, False), (2, 2, False), (5, 5, False)}
    assert tuple(np.asarray(lv.agent_start)) == (3, 2) and int(lv.start_inventory) == 1


# -- the behavioral objective (IRL) and bits on planted agents -------------------------------------------------------

@pytest.mark.parametrize("name,split,dominant", [("bfs->chests", "test", "chests"), ("bfs->keys", "test", "keys"),
                                                 ("keys-then-chests", "test", "keys"), ("bfs->keys", "train", "keys")])
def test_irl_ranks_the_planted_agents_own_feature_first(name, split, dominant):
    agent = planted_agents(TASK)[name]
    prof = objective_profile(TASK, pool(split), planted_episodes(name, split), split, policy=agent, irl_levels=40,
                             n_boot=200)
    b = prof.behavioral
    assert b.dominant == dominant, prof.reading
    assert b.goal_directedness > 0.5
    base, proxy = (c.held_out_ll for c in b.candidates)
    if split == "test":  # the candidates come apart: the agent's own objective explains it better
        assert (base > proxy) == (dominant == "chests"), prof.reading
    assert [x.objective for x in prof.bits] == ["base:chests", "proxy:keys"]


def test_bits_of_shortest_path_agents_reach_the_ceiling():
    params = pool("test")
    for name, j in (("bfs->chests", "chests"), ("bfs->keys", "keys")):
        ep = planted_episodes(name, "test")
        bits = episode_bits(TASK, params, ep)[j]
        agent, ceiling = np.asarray(bits.agent), np.asarray(bits.optimal)
        assert (agent <= ceiling + 1e-4).all()
        # completing the objective in the fewest steps is the best any agent can do on these levels
        np.testing.assert_allclose(agent, ceiling, rtol=1e-5, atol=1e-4)
    rnd = episode_bits(TASK, params, planted_episodes("random", "test"))["chests"]
    assert np.mean(np.asarray(rnd.agent)) < 0.5 * np.mean(np.asarray(rnd.optimal))


# -- training and the run study ----------------------------------------------------------------------------------------

def test_ppo_trains_on_keys_chests_smoke():
    from mesalab.optimizers import PPOConfig, make_train
    from mesalab.optimizers.ppo import _carry_over

    cfg = PPOConfig(task="keys-chests", total_steps=4096, num_envs=16, rollout_len=32, width=32, pool_size=32)
    model, metrics = jax.jit(make_train(cfg))(jax.random.key(0))
    assert np.isfinite(np.asarray(metrics["loss"])).all() and np.asarray(metrics["episodes"]).sum() > 0
    # a pool carried over between updates keeps the levels the envs are in
    old, fresh = pool("train"), pool("test")
    new, idx = _carry_over(old, fresh, jnp.array([5, 2], jnp.int32))
    assert isinstance(new, KeysChestsParams) and int(new.level_offset) == 2 and int(new.n_levels) == POOL_N
    np.testing.assert_array_equal(np.asarray(new.obj_pos[:2]), np.asarray(old.obj_pos)[[5, 2]])
    np.testing.assert_array_equal(np.asarray(new.obj_key[2:]), np.asarray(fresh.obj_key))


def test_gym_adapter_runs_keys_chests():
    from mesalab.tasks.gym_adapter import MesalabGymEnv

    env = MesalabGymEnv("keys-chests", "test", n_levels=8, level_seed=0, render_mode="rgb_array")
    obs, _ = env.reset(seed=0)
    assert obs.shape == env.observation_space.shape == TASK.env.obs_shape
    agent = planted_agents(TASK)["bfs->chests"]
    genv = TASK.env_for("global")
    act = jax.jit(lambda state, params: agent.act(genv.observe(state, params), jax.random.key(0)))
    for _ in range(TASK.max_steps):
        a = int(act(env.state, env.params))
        obs, reward, terminated, truncated, info = env.step(a)
        if terminated or truncated:
            break
    assert terminated and info["success"] and reward > 0
    assert env.render().shape[-1] == 3


@pytest.mark.slow
def test_default_run_trains_to_ninety_percent_of_chests_on_training_levels():
    """The default PPO config of ``mesalab run keys-chests`` (300k steps) opens >= 90% of the chests it could on the
    training distribution (one seed; ~20 s of training on one core)."""
    from mesalab.diagnostics.policies import model_policy
    from mesalab.optimizers import PPOConfig, make_train

    cfg = PPOConfig(task="keys-chests", total_steps=300_000)
    model, _ = jax.jit(make_train(cfg))(jax.random.key(0))
    params = evaluation_levels(TASK, "train", 300)
    ep = jax.jit(lambda k: evaluate(TASK, model_policy(model, TASK.obs_mode), params, k))(jax.random.key(1))
    rates = {r.event: r for r in event_rates(TASK, ep)}
    assert rates["chests opened"].rate >= 0.9, rates


def test_event_rates_travel_from_the_episodes_to_the_tables_terminal_and_report():
    """The run study's plumbing without training: rows per seed and split, the summary across seeds, the terminal
    table and the report section."""
    from rich.console import Console

    from mesalab.analysis.events import event_summary
    from mesalab.report.events import events_section, events_table
    from mesalab.studies.gridworld_run import event_rate_rows

    rows = []
    for seed, name in enumerate(("keys-then-chests", "bfs->keys")):
        episodes = {s: planted_episodes(name, s) for s in ("train", "test")}
        rows += [r._asdict() for r in event_rate_rows(TASK, seed, episodes)]
    assert event_rate_rows(get_task("red-door"), 0, {}) == []
    assert len(rows) == 12
    summary = event_summary(rows)
    spare = summary.cells[("test", "spare keys collected")]
    assert spare.n_seeds == 2 and spare.mean == 1.0
    assert math.isnan(summary.cells[("train", "spare keys collected")].mean)
    both = [r["rate"] for r in rows if (r["split"], r["event"]) == ("test", "chests opened")]
    assert summary.cells[("test", "chests opened")].mean == pytest.approx(np.mean(both))
    console = Console(width=200, record=True)
    console.print(events_table(summary))
    text = console.export_text()
    assert "spare keys collected" in text and " - " in text  # no spare keys in training
    section = events_section(summary)
    assert section["sentence"].startswith("On test levels the 2 seeds opened") and "spare keys" in section["sentence"]


@pytest.mark.slow
def test_mesalab_run_keys_chests_reports_event_rates(tmp_path):
    """``mesalab run keys-chests`` (tiny: 2 seeds, 4096 steps, 24 episodes) stores the event rates of every seed and
    split and shows them, with the verdict, in the terminal and the report."""
    import json
    import subprocess
    import sys

    from mesalab.studies.gridworld_run import RUN

    cfg = tmp_path / "small.json"
    cfg.write_text(json.dumps({"num_envs": 16, "rollout_len": 32, "width": 32, "depth": 1, "pool_size": 64,
                               "total_steps": 4096}))
    out = tmp_path / "kc"
    res = subprocess.run([sys.executable, "-m", "mesalab", "run", "keys-chests", "--seeds", "2", "--episodes", "24",
                          "--config", str(cfg), "--workers", "0", "--out", str(out)], capture_output=True, text=True,
                         timeout=900, env={**__import__("os").environ, "COLUMNS": "200"})
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "Keys and chests" in res.stdout and "spare keys collected" in res.stdout
    folder = RUN.folder(out)
    rows = folder.tables("event_rates")["event_rates"]
    events = ("chests opened", "keys collected", "spare keys collected")
    assert sorted((r["seed"], r["split"], r["event"]) for r in rows) == sorted(
        (seed, split, e) for seed in (0, 1) for split in ("train", "test") for e in events)
    for r in rows:
        assert 0 <= r["count"] <= r["possible"] or (r["possible"] == 0 and r["event"] == "spare keys collected")
    verdicts = folder.tables("verdicts")["verdicts"]
    assert all("spare keys" in v["text"] for v in verdicts)
    html = (out / "report.html").read_text()
    assert "Keys and chests" in html and "spare keys collected" in html
    assert int(taken_mask(jnp.array([True, False, True]))) == 5
