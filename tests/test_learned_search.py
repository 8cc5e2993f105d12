"""Learned search (issue 5): maze-path targets against an independent BFS, the recall network and its trainer,
the compute-scaling statistics, recurrent policies (carry, ticks, reset at episode start), recurrent PPO, and
the statefulness / time-penalty / extrapolation presets."""

from collections import deque

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mesalab.errors import ConfigError


def bfs_path(free: np.ndarray, start, goal) -> np.ndarray:
    """Reference: the cells of a shortest start-goal path by textbook BFS with parent pointers."""
    h, w = free.shape
    parent = {tuple(start): None}
    q = deque([tuple(start)])
    while q:
        c = q.popleft()
        if c == tuple(goal):
            break
        for dr, dc in ((-1, 0), (0, 1), (1, 0), (0, -1)):
            n = (c[0] + dr, c[1] + dc)
            if 0 <= n[0] < h and 0 <= n[1] < w and free[n] and n not in parent:
                parent[n] = c
                q.append(n)
    mask = np.zeros_like(free)
    c = tuple(goal)
    while c is not None:
        mask[c] = True
        c = parent[c]
    return mask


@pytest.mark.parametrize("size", [9, 13, 21])
def test_maze_path_targets_equal_textbook_bfs_paths(size):
    from mesalab.tasks.maze_path import sample_batch

    batch = sample_batch(jax.random.PRNGKey(size), 16, size)
    image, path = np.asarray(batch.image), np.asarray(batch.path)
    assert image.shape == (16, size, size, 3) and path.shape == (16, size, size)
    for i in range(16):
        free = image[i, ..., 0] > 0
        start = np.argwhere(image[i, ..., 1] > 0)[0]
        goal = np.argwhere(image[i, ..., 2] > 0)[0]
        assert not np.array_equal(start, goal) and free[tuple(start)] and free[tuple(goal)]
        np.testing.assert_array_equal(path[i], bfs_path(free, start, goal))
        # a perfect maze: free cells form a tree (edges = cells - 1), so the path is unique
        edges = np.sum(free[:, :-1] & free[:, 1:]) + np.sum(free[:-1] & free[1:])
        assert edges == free.sum() - 1


def test_maze_path_rejects_bad_sizes_with_a_fix():
    from mesalab.tasks.maze_path import sample_batch

    with pytest.raises(ConfigError, match="odd"):
        sample_batch(jax.random.PRNGKey(0), 2, 10)


def small_thinker(**kw):
    from mesalab.optimizers.thinking import ThinkingConfig, init_model

    cfg = ThinkingConfig(**{"width": 8, "ticks": 3, "blocks": 1, "pointwise": 1, "head_width": 4, **kw})
    return cfg, init_model(cfg, jax.random.PRNGKey(0))


def test_recall_thinker_runs_any_size_and_any_ticks_with_per_tick_intermediates():
    from mesalab.tasks.maze_path import sample_batch

    _, model = small_thinker()
    for size, ticks in ((9, 3), (13, 7)):
        image = sample_batch(jax.random.PRNGKey(1), 1, size).image[0]
        logits, acts = model(image, ticks=ticks)
        assert logits.shape == (ticks, size, size)
        assert acts["hidden"].shape == (ticks, size, size, 8)
        # the last tick's logits are the readout of the last hidden state
        np.testing.assert_allclose(logits[-1], model.readout(acts["hidden"][-1]), atol=1e-5)


def test_an_intervention_on_hidden_acts_inside_the_loop():
    from mesalab.tasks.maze_path import sample_batch

    _, model = small_thinker()
    image = sample_batch(jax.random.PRNGKey(2), 1, 9).image[0]
    logits, _ = model(image, interventions={"hidden": lambda h: h * 0.0})
    # with the state zeroed at every tick, every tick reads out the head applied to zeros
    expected = model.readout(jnp.zeros((9, 9, 8), jnp.float32))
    np.testing.assert_allclose(logits, jnp.broadcast_to(expected, logits.shape), atol=1e-6)
    plain, _ = model(image)
    assert not np.allclose(plain, logits)


def test_a_closed_gate_holds_the_state_and_an_open_gate_is_the_ungated_tick():
    import equinox as eqx

    from mesalab.models.thinking import RecallThinker
    from mesalab.tasks.maze_path import sample_batch

    gated = RecallThinker(3, width=8, blocks=0, head_width=4, ticks=3, pointwise=1, gated=True,
                          key=jax.random.PRNGKey(0))
    plain = eqx.tree_at(lambda m: m.gate, gated, None, is_leaf=lambda x: x is None)
    image = sample_batch(jax.random.PRNGKey(2), 1, 9).image[0]
    h = jax.random.uniform(jax.random.PRNGKey(3), (9, 9, 8), jnp.float32)

    def with_gate_bias(b):
        return eqx.tree_at(lambda m: m.gate[1], gated, jnp.full((8,), b, jnp.float32))

    np.testing.assert_allclose(with_gate_bias(-1e4).tick(h, image), h, atol=1e-6)
    np.testing.assert_allclose(with_gate_bias(1e4).tick(h, image), plain.tick(h, image), atol=1e-6)
    half = gated.tick(h, image)  # a real gate lies strictly between keeping and replacing
    assert not np.allclose(half, h) and not np.allclose(half, plain.tick(h, image))


def test_training_ticks_perturb_only_as_configured():
    """Asynchronous updates keep each cell's old state with probability 1 - update_prob (whole cells, every
    channel), and state noise adds N(0, state_noise^2); with neither, a training tick is the model's tick."""
    from mesalab.optimizers.thinking import training_tick
    from mesalab.tasks.maze_path import sample_batch

    _, model = small_thinker()
    image = sample_batch(jax.random.PRNGKey(2), 4, 13).image
    h = jax.random.uniform(jax.random.PRNGKey(3), image.shape[:-1] + (model.recall[1].shape[0],), jnp.float32)
    key = jax.random.PRNGKey(4)
    plain = jax.vmap(model.tick)(h, image)
    np.testing.assert_array_equal(training_tick(model, h, image, key), plain)

    mixed = np.asarray(training_tick(model, h, image, key, update_prob=0.7))
    new_cell = np.all(mixed == np.asarray(plain), axis=-1)
    old_cell = np.all(mixed == np.asarray(h), axis=-1)
    assert np.all(new_cell | old_cell)  # every cell is wholly new or wholly old
    assert abs(new_cell.mean() - 0.7) < 0.05  # 676 cells: 0.7 +- 0.018 (sd)

    noisy = np.asarray(training_tick(model, h, image, key, state_noise=0.3)) - np.asarray(plain)
    assert abs(noisy.mean()) < 0.015 and abs(noisy.std() - 0.3) < 0.01  # ~5000 draws


def test_anytime_and_worst_cell_losses_have_known_values():
    """The anytime path loss scores only path cells (softplus(-logit) averaged over readouts and path cells); the
    worst-cell term adds each maze's largest per-cell cross-entropy; with weight 0 the loss is the plain mean."""
    from mesalab.optimizers.thinking import anytime_path_loss, path_loss

    path = jnp.array([[[True, False], [False, False]], [[True, True], [False, False]]])  # 3 path cells, 2 mazes
    logits = jnp.zeros((2, 2, 2), jnp.float32)  # every cell undecided: BCE = log 2
    np.testing.assert_allclose(path_loss(logits, path), np.log(2), rtol=1e-6)
    np.testing.assert_allclose(path_loss(logits, path, worst_cell_weight=0.5), 1.5 * np.log(2), rtol=1e-6)
    wrong = logits.at[1, 1, 1].set(-3.0)  # off-path cell confidently right: BCE softplus(-3)
    worst = np.mean([np.log(2), np.log(2)])
    np.testing.assert_allclose(path_loss(wrong, path, 1.0),
                               (7 * np.log(2) + np.log1p(np.exp(-3.0))) / 8 + worst, rtol=1e-6)
    readouts = jnp.stack([jnp.full((2, 2, 2), 20.0), jnp.full((2, 2, 2), -20.0)])  # tick 1 all on, tick 2 all off
    # off-path cells are never scored; each path cell costs ~0 at the first readout and ~20 at the second
    np.testing.assert_allclose(anytime_path_loss(readouts, path), 10.0, rtol=1e-6)


def test_training_ticks_with_readouts_are_the_same_ticks():
    """Reading out every k-th tick (for the anytime loss) changes nothing about the ticks themselves, and the k-th
    readout is the head applied to the state after 3k ticks of the model's own loop."""
    from mesalab.optimizers.thinking import _run_ticks
    from mesalab.tasks.maze_path import sample_batch

    _, model = small_thinker()
    image = sample_batch(jax.random.PRNGKey(2), 3, 9).image
    h0 = jax.vmap(model.initial_state)(image)
    key = jax.random.PRNGKey(4)
    plain, none = _run_ticks(model, h0, image, 7, key, state_noise=0.1)
    h, readouts = _run_ticks(model, h0, image, 7, key, state_noise=0.1, readout_every=3)
    assert none is None and readouts.shape == (2, 3, 9, 9)
    np.testing.assert_allclose(h, plain, rtol=1e-5, atol=1e-5)
    _, readouts = _run_ticks(model, h0, image, 7, key, readout_every=3)  # noiseless: the model's own ticks
    for i in range(3):
        logits, _ = model(image[i], ticks=6)
        np.testing.assert_allclose(readouts[:, i], logits[jnp.array([2, 5])], rtol=1e-4, atol=1e-4)
    _, last = _run_ticks(model, h0, image, 2, key, readout_every=3)  # fewer ticks than the spacing: the last one
    np.testing.assert_allclose(last[0], jax.vmap(model.readout)(_run_ticks(model, h0, image, 2, key)[0]), atol=1e-5)


def test_solved_per_tick_agrees_with_the_model_call():
    from mesalab.diagnostics.compute_scaling import solved_per_tick
    from mesalab.tasks.maze_path import sample_batch

    _, model = small_thinker()
    batch = sample_batch(jax.random.PRNGKey(3), 4, 9)
    solved = np.asarray(solved_per_tick(model, batch, 5))
    for i in range(4):
        logits, _ = model(batch.image[i], ticks=5)
        expect = np.all((np.asarray(logits) > 0) == np.asarray(batch.path[i])[None], axis=(1, 2))
        np.testing.assert_array_equal(solved[i], expect)


def test_thinking_trainer_is_reproducible_and_seeds_are_a_vmap_axis():
    from mesalab.optimizers.thinking import ThinkingConfig, make_train

    cfg = ThinkingConfig(width=8, ticks=2, blocks=0, pointwise=1, head_width=4, steps=4, batch=4, eval_every=2)
    train = make_train(cfg)
    m1, a = train(jax.random.PRNGKey(5))
    _, b = train(jax.random.PRNGKey(5))
    np.testing.assert_array_equal(a["loss"], b["loss"])
    assert a["loss"].shape == (4,) and a["train_accuracy"].shape == (2,)
    keys = jnp.stack([jax.random.PRNGKey(5), jax.random.PRNGKey(6)])
    mv, c = train(keys)
    assert c["loss"].shape == (2, 4)
    np.testing.assert_allclose(c["loss"][0], a["loss"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(mv.recall[0][0], m1.recall[0], rtol=1e-3, atol=1e-5)


def test_thinking_config_errors_name_the_fix():
    from mesalab.optimizers.thinking import ThinkingConfig

    with pytest.raises(ConfigError, match="odd"):
        ThinkingConfig.from_dict({"size": 8})
    with pytest.raises(ConfigError, match="progressive"):
        ThinkingConfig.from_dict({"progressive": 1.5})
    with pytest.raises(ConfigError, match="update_prob"):
        ThinkingConfig.from_dict({"update_prob": 0.0})
    with pytest.raises(ConfigError, match="state_noise"):
        ThinkingConfig.from_dict({"state_noise": -0.1})
    with pytest.raises(ConfigError, match="anytime_every"):
        ThinkingConfig.from_dict({"anytime_every": 0})
    with pytest.raises(ConfigError, match="worst_cell_weight"):
        ThinkingConfig.from_dict({"worst_cell_weight": -1.0})
    with pytest.raises(ConfigError, match="unknown config key"):
        ThinkingConfig.from_dict({"tick": 3})


def test_saved_thinking_models_round_trip_and_corrupt_files_give_one_line(tmp_path):
    from mesalab.errors import CorruptRunError
    from mesalab.optimizers.thinking import load_model, save_model

    cfg, model = small_thinker()
    path = str(tmp_path / "m.eqx")
    save_model(path, model, cfg)
    back = load_model(path)
    np.testing.assert_array_equal(back.recall[0], model.recall[0])
    (tmp_path / "m.eqx").write_bytes(b"garbage")
    with pytest.raises(CorruptRunError, match="retrain"):
        load_model(path)


def test_compute_scaling_statistics_on_a_planted_table():
    from mesalab.diagnostics.compute_scaling import ComputeScaling

    n, t = 100, 6
    solved = np.zeros((2, n, t), bool)
    solved[0, :, 1:] = True  # size 9: solved from tick 2 on
    solved[1, :30, 3:] = True  # size 13: 30% solved from tick 4 on
    cs = ComputeScaling(np.array([9, 13]), np.arange(1, t + 1), solved, 9, 2)
    np.testing.assert_allclose(cs.accuracy[1], [0, 0, 0, 0.3, 0.3, 0.3])
    assert cs.accuracy_at(9, 2)[0] == 1.0 and cs.accuracy_at(9, 1) == (0.0, 0.0, pytest.approx(0.037, abs=1e-3))
    assert cs.best_ticks(13) == 4
    g, lo, hi = cs.gain(13)
    assert g == pytest.approx(0.3) and 0.2 < lo < 0.3 < hi < 0.4
    assert cs.gain(9) == (0.0, 0.0, 0.0)
    rows = {r["size"]: r for r in cs.summary()}
    assert rows[13]["accuracy_at_trained_ticks"] == 0.0 and rows[13]["accuracy_at_best_ticks"] == pytest.approx(0.3)


def test_compute_scaling_cell_metrics():
    from mesalab.studies.sweep import compute_scaling_metrics

    v = compute_scaling_metrics(2, {1: (10, 100), 2: (40, 100), 4: (55, 100)})
    assert v["test/success@ticks=2"] == 0.4
    assert v["test/compute_gain_2x"] == pytest.approx(0.15)


# ---- recurrent policies -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def maze():
    from mesalab.tasks import get_task

    return get_task("maze")


@pytest.mark.parametrize("kind", ["gru", "convgru"])
def test_recurrent_models_carry_state_and_ticks_change_the_computation(maze, kind):
    from mesalab.models import is_recurrent, make_model

    model = make_model(kind, obs_shape=maze.env.obs_shape, n_actions=4, key=jax.random.PRNGKey(0), width=16, depth=1,
                       ticks=2, channels=4)
    assert is_recurrent(model)
    obs = jax.random.bernoulli(jax.random.PRNGKey(1), 0.3, maze.env.obs_shape).astype(jnp.float32)
    (out0, acts0) = model(obs)
    ((logits, value), carry), acts = model.step(obs, model.initial_carry())
    np.testing.assert_allclose(out0[0], logits, atol=1e-6)
    assert any(k.startswith("tick_1/") for k in acts) and not any(k.startswith("tick_2/") for k in acts)
    ((logits2, _), carry2), _ = model.step(obs, carry)  # same observation, different memory
    assert not np.allclose(logits, logits2)
    ((logits4, _), _), acts4 = model.step(obs, model.initial_carry(), ticks=4)
    assert any(k.startswith("tick_3/") for k in acts4) and not np.allclose(logits, logits4)


def test_parameter_formulas_match_the_models_so_statefulness_compares_equal_sizes(maze):
    from mesalab.experiments.presets import (MAZE_OBS_SIZE, PRESETS, equal_parameter_gru_width, gru_parameters,
                                             mlp_parameters)
    from mesalab.models import make_model

    def count(m):
        import equinox as eqx

        return sum(x.size for x in jax.tree_util.tree_leaves(eqx.filter(m, eqx.is_array)))

    assert int(np.prod(maze.env.obs_shape)) == MAZE_OBS_SIZE
    key = jax.random.PRNGKey(0)
    shape = dict(obs_shape=maze.env.obs_shape, n_actions=4)
    assert count(make_model("mlp", key=key, **shape, width=128, depth=2)) == mlp_parameters(MAZE_OBS_SIZE, 128, 2)
    assert count(make_model("gru", key=key, **shape, width=37)) == gru_parameters(MAZE_OBS_SIZE, 37)
    w = equal_parameter_gru_width(MAZE_OBS_SIZE, 128, 2)
    assert abs(gru_parameters(MAZE_OBS_SIZE, w) / mlp_parameters(MAZE_OBS_SIZE, 128, 2) - 1) < 0.01
    from mesalab.experiments.plan import cells

    cfgs = {c.value: c.config for c in cells(PRESETS["statefulness"], [0])}
    mlp = make_model("mlp", key=key, **shape, width=cfgs["mlp"]["width"], depth=cfgs["mlp"]["depth"])
    gru = make_model("gru", key=key, **shape, width=cfgs["gru"]["width"])
    assert abs(count(gru) / count(mlp) - 1) < 0.01


def test_replay_resets_the_hidden_state_exactly_at_episode_starts(maze):
    """The forward pass recurrent PPO trains through equals stepping the model by hand, carrying memory within an
    episode and starting from the initial carry at every episode start."""
    from mesalab.models import make_model
    from mesalab.optimizers.ppo import replay_recurrent

    model = make_model("gru", obs_shape=maze.env.obs_shape, n_actions=4, key=jax.random.PRNGKey(0), width=16, ticks=2)
    t, b = 6, 2
    obs = jax.random.bernoulli(jax.random.PRNGKey(1), 0.3, (t, b, *maze.env.obs_shape)).astype(jnp.float32)
    start = jnp.zeros((t, b), jnp.bool_).at[0].set(True).at[3, 0].set(True)
    h0 = jnp.ones((b, 16), jnp.float32)  # reset at t = 0 must discard this
    logits, _ = replay_recurrent(model, obs, start, h0)
    for j in range(b):
        h = model.initial_carry()
        for i in range(t):
            if bool(start[i, j]):
                h = model.initial_carry()
            ((lg, _), h), _ = model.step(obs[i, j], h)
            np.testing.assert_allclose(logits[i, j], lg, atol=1e-5)


def test_a_stateful_policy_is_rolled_out_with_its_memory(maze):
    """Evaluation threads the recurrent policy's carry through the episode: the rollout equals a hand loop."""
    from mesalab.diagnostics import model_policy
    from mesalab.diagnostics.evaluation import rollout
    from mesalab.models import make_model
    from mesalab.tasks.grid import EnvState, GridEnv

    model = make_model("gru", obs_shape=maze.env.obs_shape, n_actions=4, key=jax.random.PRNGKey(3), width=16, ticks=1)
    policy = model_policy(model, maze.obs_mode, greedy=True, ticks=3)
    params = maze.sample_params_checked(jax.random.PRNGKey(4), "test", 2)
    env = GridEnv(maze.shape.height, maze.shape.width, maze.obs_mode)
    positions, actions, length = rollout(env, policy, params, jnp.int32(1), jax.random.PRNGKey(5), 10)
    state = EnvState(level=jnp.int32(1), pos=params.start[1], t=jnp.zeros((), jnp.int32))
    h = model.initial_carry()
    for i in range(int(length)):
        ((logits, _), h), _ = model.step(env.observe(state, params), h, ticks=3)
        assert int(actions[i]) == int(jnp.argmax(logits))
        state, _, done, _ = env.step_no_reset(state, actions[i], params)
        np.testing.assert_array_equal(positions[i + 1], state.pos)


def test_recurrent_ppo_trains_reproducibly_and_seeds_are_a_vmap_axis():
    from mesalab.optimizers import PPOConfig, make_train

    cfg = PPOConfig(task="maze", model="gru", ticks=2, width=16, num_envs=8, rollout_len=16, num_minibatches=2,
                    update_epochs=2, total_steps=8 * 16 * 3)
    train = jax.jit(make_train(cfg))
    _, m1 = train(jax.random.key(0))
    _, m2 = train(jax.random.key(0))
    np.testing.assert_array_equal(np.asarray(m1["loss"]), np.asarray(m2["loss"]))
    assert np.isfinite(np.asarray(m1["loss"])).all()
    # the first update's policy is the one that collected the data: the first minibatch's ratio is 1, so the
    # approximate KL of the first update is small (it only grows within the update)
    assert abs(float(m1["approx_kl"][0])) < 0.05
    _, mv = jax.jit(jax.vmap(make_train(cfg)))(jax.vmap(jax.random.key)(jnp.arange(2, dtype=jnp.uint32)))
    np.testing.assert_allclose(np.asarray(mv["loss"][0]), np.asarray(m1["loss"]), rtol=1e-3, atol=1e-5)


def test_recurrent_minibatches_must_divide_the_envs():
    from mesalab.optimizers import PPOConfig

    with pytest.raises(ConfigError, match="num_envs"):
        PPOConfig(task="maze", model="gru", num_envs=6, num_minibatches=4, rollout_len=32).validate()
    with pytest.raises(ConfigError, match="ticks"):
        PPOConfig(task="maze", model="gru", ticks=0).validate()


# ---- presets ----------------------------------------------------------------------------------------------------

def test_time_penalty_and_statefulness_presets_plan_shape_batches():
    from mesalab.experiments.plan import batches
    from mesalab.experiments.presets import PRESETS, configured_preset

    tp = PRESETS["time-penalty"]
    assert not tp.dial.is_data
    bs = batches(tp, list(range(5)))
    assert sorted(b.config["ticks"] for b in bs) == [1, 2, 4, 8] and all(len(b.cells) == 5 for b in bs)
    st = PRESETS["statefulness"]
    assert [st.dial.order(v) for v in st.dial.values] == [0.0, 1.0]
    assert {b.config["model"] for b in batches(st, [0, 1])} == {"mlp", "gru"}
    with pytest.raises(ConfigError, match="equal parameters"):
        configured_preset("statefulness", {"width": 64})


def test_extrapolation_settings_errors_name_the_fix():
    from mesalab.studies.extrapolation import settings_of
    from mesalab.experiments.presets import get_preset

    with pytest.raises(ConfigError, match="max-ticks"):
        settings_of({"ticks": 20}, [9], 10, 10)
    with pytest.raises(ConfigError, match="odd"):
        settings_of({}, [9, 12], 40, 10)
    with pytest.raises(ConfigError, match="mesalab sweep extrapolation"):
        get_preset("extrapolation")


@pytest.mark.slow
def test_statefulness_sweep_stores_categorical_dial_values_and_reports_them(tmp_path):
    """A tiny statefulness sweep in-process: MLP and GRU cells are stored and analysed by dial position, the
    recurrent cells carry compute-scaling metrics, and the report draws them."""
    from mesalab.studies import launch

    out = tmp_path / "st"
    # one pinned worker process: vmapped PPO in-process on two cores can deadlock (design.md)
    a = launch("sweep", "statefulness", out, seeds=2, workers=1, episodes=20, irl_levels=0,
               config={"num_envs": 8, "rollout_len": 16, "num_minibatches": 2, "pool_size": 32,
                       "total_steps": 8 * 16 * 2})
    assert a.n_cells == 4 == a.n_expected
    assert sorted({r[2] for r in a.cells}) == [0.0, 1.0]
    gru_cells = [r[0] for r in a.cells if r[2] == 1.0]
    for cid in gru_cells:
        assert (cid, "test/compute_gain_2x") in a.metrics and (cid, "test/success@ticks=2") in a.metrics
    assert not any(m.startswith("test/success@ticks") for (cid, m) in a.metrics if cid not in gru_cells)
    success = next(s for s in a.series if s.metric == "test/success")
    assert [p.value for p in success.points] == ["mlp", "gru"]
    html = (out / "report.html").read_text()
    assert "Test-time compute scaling" in html


@pytest.mark.slow
def test_extrapolation_sweep_end_to_end_resumes_and_renders(tmp_path, chromium):
    """`mesalab sweep extrapolation` on a tiny network: one cell per seed in DuckDB, accuracy per (size, tick), a
    re-run trains nothing (also for a folder whose stored config predates a config key, if it trained as asked;
    one that trained otherwise is refused), other settings are refused with a one-line error, and the report's
    figures load."""
    import json
    import subprocess
    import sys

    import duckdb
    from conftest import figures_loaded_in_chromium

    from mesalab.optimizers.thinking import ADDED_KEYS_AS_BEFORE

    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps({"width": 8, "ticks": 3, "blocks": 0, "pointwise": 1, "head_width": 4,
                               "eval_every": 2, "batch": 4, "anytime_path_weight": 1.0}))
    out = tmp_path / "ex"
    args = [sys.executable, "-m", "mesalab", "sweep", "extrapolation", "--seeds", "2", "--steps", "4", "--config",
            str(cfg), "--sizes", "9,13", "--max-ticks", "6", "--mazes", "10", "--out", str(out)]
    first = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    con = duckdb.connect(str(out / "sweep.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM cells").fetchone()[0] == 2
        assert con.execute("SELECT count(*) FROM thinking_accuracy").fetchone()[0] == 2 * 2 * 6
        assert con.execute("SELECT count(*) FROM thinking_summary").fetchone()[0] == 2 * 2
    finally:
        con.close()
    mtime = (out / "sweep.duckdb").stat().st_mtime
    original = (out / "sweep.json").read_text()
    meta = json.loads(original)
    # as written before the later config keys existed, by a version that trained as this config does
    for key, before in ADDED_KEYS_AS_BEFORE.items():
        if meta["config"][key] == before:
            del meta["config"][key]
    (out / "sweep.json").write_text(json.dumps(meta))
    again = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "13×13" in again.stdout
    other = subprocess.run(args[:-1] + [str(out)] + ["--mazes", "11"], capture_output=True, text=True, timeout=600)
    assert other.returncode == 2 and "other settings" in other.stderr + other.stdout
    # an old folder without anytime_path_weight was trained without that loss: it is not this sweep
    del meta["config"]["anytime_path_weight"]
    (out / "sweep.json").write_text(json.dumps(meta))
    older = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert older.returncode == 2 and "other settings" in older.stderr + older.stdout
    assert (out / "checkpoints" / "seed_1.eqx").exists() and mtime <= (out / "sweep.duckdb").stat().st_mtime
    assert "dead-end filling" in (out / "report.html").read_text()
    loaded, total = figures_loaded_in_chromium(out / "report.html", tmp_path, chromium)
    assert loaded == total == 2

    # `mesalab probe` on the sweep folder: which algorithm its networks run, stored beside the sweep and reported
    (out / "sweep.json").write_text(original)
    probe = [sys.executable, "-m", "mesalab", "probe", str(out), "--levels", "20", "--sizes", "9", "--max-ticks", "8",
             "--workers", "0"]
    res = subprocess.run(probe, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    con = duckdb.connect(str(out / "probes.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM maze_timing").fetchone()[0] == 2 * 2 * 2  # seeds x sources x algorithms
        ticks = con.execute("SELECT DISTINCT tick FROM maze_probes WHERE source = 'trained' ORDER BY tick").fetchall()
        assert [t for (t,) in ticks] == [1, 2, 3, 4, 6, 8]  # geometric ticks to 8 and the training ticks
        assert con.execute("SELECT count(*) FROM maze_probes").fetchone()[0] == 2 * (4 + 6 * 4 * 2)
    finally:
        con.close()
    assert (out / "probes" / "seed-1.npz").exists()
    html = (out / "report.html").read_text()
    assert "Inside the network" in html and "9×9 (the training size): Spearman" in html
    loaded, total = figures_loaded_in_chromium(out / "report.html", tmp_path, chromium)
    assert loaded == total == 4
    again = subprocess.run(probe, capture_output=True, text=True, timeout=600)
    assert again.returncode == 2 and "already holds the probes" in again.stderr + again.stdout
    steps = subprocess.run(probe + ["--steps", "4", "--replace"], capture_output=True, text=True, timeout=600)
    assert steps.returncode == 2 and "--steps is not used" in steps.stderr + steps.stdout


@pytest.mark.slow
def test_a_recurrent_run_report_shows_test_time_compute(tmp_path):
    import json
    import subprocess
    import sys

    cfg = tmp_path / "gru.json"
    cfg.write_text(json.dumps({"model": "gru", "ticks": 2, "width": 16, "num_envs": 8, "rollout_len": 16,
                               "num_minibatches": 2, "total_steps": 8 * 16 * 2}))
    res = subprocess.run([sys.executable, "-m", "mesalab", "run", "maze", "--config", str(cfg), "--seeds", "2",
                          "--episodes", "20", "--workers", "1", "--out", str(tmp_path / "run")],
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
    html = (tmp_path / "run" / "report.html").read_text()
    assert "Test-time compute scaling" in html and "with 4 ticks the change is" in html
