"""Maze-path internals (mesalab.diagnostics.maze_internals) against known answers: exact labels against plain-Python
BFS and leaf pruning; planted solvers that run dead-end filling or a two-ended wavefront with real local rules
(the reading must name the one each runs, and neither for a mixture or an untrained network); planted
representations for the probes."""

from __future__ import annotations

from collections import deque

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mesalab.diagnostics import maze_internals as mi
from mesalab.models.thinking import RecallThinker
from mesalab.tasks import maze_path

SIZE = 11


@pytest.fixture(scope="module")
def mazes():
    batch = maze_path.sample_batch(jax.random.key(3), 60, SIZE)
    return np.asarray(batch.image), mi.maze_labels(batch.image)


def _shift(x, dr, dc):
    """``x`` moved so that cell (r, c) holds the value of its neighbour (r + dr, c + dc) (zero beyond the edge)."""
    p = jnp.pad(x, [(1, 1), (1, 1)] + [(0, 0)] * (x.ndim - 2))
    h, w = x.shape[:2]
    return p[1 + dr:1 + dr + h, 1 + dc:1 + dc + w]


DIRS = ((-1, 0), (1, 0), (0, -1), (0, 1))


class PlantedFiller(eqx.Module):
    """Dead-end filling as a cellular automaton: hidden = [alive, end]."""

    def initial_state(self, image):
        return jnp.stack([image[..., 0], jnp.maximum(image[..., 1], image[..., 2])], -1)

    def tick(self, h, image):
        alive, end = h[..., 0] > 0.5, h[..., 1] > 0.5
        n = sum(_shift(alive, dr, dc).astype(jnp.int32) for dr, dc in DIRS)
        leaf = alive & ~end & (n <= 1)
        return h.at[..., 0].set((alive & ~leaf).astype(jnp.float32))

    def readout(self, h):
        return 2.0 * h[..., 0] - 1.0


class PlantedWavefront(eqx.Module):
    """Two breadth-first waves from start and goal; a cell both reached is off when its steps back toward the start
    and toward the goal go to the same neighbour. hidden = [free, end, reached_s, reached_g, off, dir_s x4, dir_g x4]."""

    def initial_state(self, image):
        free, s, g = image[..., 0], image[..., 1], image[..., 2]
        z = jnp.zeros_like(free)
        return jnp.stack([free, jnp.maximum(s, g), s, g, z] + [z] * 8, -1)

    def tick(self, h, image):
        free = h[..., 0] > 0.5
        out = h
        for wave, d0 in ((2, 5), (3, 9)):
            reached = h[..., wave] > 0.5
            new = jnp.zeros_like(reached)
            for k, (dr, dc) in enumerate(DIRS):
                from_k = free & ~reached & ~new & (_shift(reached, dr, dc))
                out = out.at[..., d0 + k].set(jnp.where(from_k, 1.0, out[..., d0 + k]))
                new = new | from_k
            out = out.at[..., wave].set((reached | new).astype(jnp.float32))
        both = (out[..., 2] > 0.5) & (out[..., 3] > 0.5) & (out[..., 1] < 0.5)
        same = jnp.all(out[..., 5:9] == out[..., 9:13], -1)
        return out.at[..., 4].set((both & same).astype(jnp.float32))

    def readout(self, h):
        return jnp.where((h[..., 0] > 0.5) & (h[..., 4] < 0.5), 1.0, -1.0)


class PlantedMixture(eqx.Module):
    """Dead-end filling on the left half of the maze, the wavefront's rule on the right half (one network, two
    procedures)."""

    fill: PlantedFiller
    wave: PlantedWavefront

    def initial_state(self, image):
        return jnp.concatenate([self.fill.initial_state(image), self.wave.initial_state(image)], -1)

    def tick(self, h, image):
        return jnp.concatenate([self.fill.tick(h[..., :2], image), self.wave.tick(h[..., 2:], image)], -1)

    def readout(self, h):
        left = jnp.arange(h.shape[1])[None, :] < h.shape[1] // 2
        return jnp.where(left, self.fill.readout(h[..., :2]), self.wave.readout(h[..., 2:]))


def _bfs(free, start):
    d = np.full(free.shape, -1)
    d[start] = 0
    q = deque([start])
    while q:
        r, c = q.popleft()
        for dr, dc in DIRS:
            rr, cc = r + dr, c + dc
            if 0 <= rr < free.shape[0] and 0 <= cc < free.shape[1] and free[rr, cc] and d[rr, cc] < 0:
                d[rr, cc] = d[r, c] + 1
                q.append((rr, cc))
    return d


def _prune(free, ends):
    """Dead-end filling by hand: {cell: iteration removed}."""
    alive = {(r, c) for r, c in zip(*np.nonzero(free))}
    depth, k = {}, 0
    while True:
        k += 1
        leaves = {p for p in alive if p not in ends
                  and sum((p[0] + dr, p[1] + dc) in alive for dr, dc in DIRS) <= 1}
        if not leaves:
            return depth
        for p in leaves:
            depth[p] = k
        alive -= leaves


def test_labels_match_plain_python(mazes):
    images, labels = mazes
    for i in range(8):
        free = images[i, ..., 0] > 0.5
        start = tuple(int(v) for v in np.argwhere(images[i, ..., 1] > 0.5)[0])
        goal = tuple(int(v) for v in np.argwhere(images[i, ..., 2] > 0.5)[0])
        ds, dg = _bfs(free, start), _bfs(free, goal)
        assert np.array_equal(np.where(free, labels.dist_start[i], -1), ds)
        assert np.array_equal(np.where(free, labels.dist_goal[i], -1), dg)
        depth = _prune(free, {start, goal})
        want = np.zeros(free.shape, np.int32)
        for p, k in depth.items():
            want[p] = k
        assert np.array_equal(labels.fill_depth[i], want)
        on_path = free & (ds + dg == ds[goal])
        assert np.array_equal(labels.path[i], on_path)
        assert np.array_equal(labels.path[i], free & (want == 0))  # filling leaves exactly the path


@pytest.mark.parametrize("model,algorithm", [(PlantedFiller(), "dead-end filling"),
                                             (PlantedWavefront(), "wavefront from the ends")])
def test_planted_solver_is_named(mazes, model, algorithm):
    images, labels = mazes
    thought = mi.think(model, images, mi.default_ticks(labels, 1))
    timings = {t.algorithm: t for t in mi.decision_timing(thought, labels)}
    assert thought.final.shape == labels.path.shape
    assert timings[algorithm].solved == 1.0 and timings[algorithm].settled == 1.0
    assert timings[algorithm].path_on == 1.0
    assert timings[algorithm].rho > 0.99 and timings[algorithm].ci[0] > 0.99
    assert abs(timings[algorithm].slope - 1.0) < 0.02  # one cell per tick
    other = next(t for t in timings.values() if t.algorithm != algorithm)
    assert other.rho < 0.3
    assert mi.supported_algorithm(list(timings.values())) == algorithm


def test_planted_filler_decides_at_its_depth(mazes):
    images, labels = mazes
    thought = mi.think(PlantedFiller(), images, mi.default_ticks(labels, 1))
    tau = mi.decision_ticks(thought)
    off = labels.dead_end
    assert np.array_equal(tau[off], labels.fill_depth[off].astype(np.float64))


def test_mixture_and_untrained_are_not_named(mazes):
    images, labels = mazes
    mix = mi.think(PlantedMixture(PlantedFiller(), PlantedWavefront()), images, mi.default_ticks(labels, 1))
    timings = mi.decision_timing(mix, labels)
    assert all(t.n_mazes >= 50 and np.isfinite(t.rho) for t in timings)  # measured, and read as neither
    assert mi.supported_algorithm(timings) is None
    untrained = RecallThinker(3, width=8, blocks=0, head_width=4, ticks=10, pointwise=1, key=jax.random.key(0))
    th = mi.think(untrained, images, 40)
    timings = mi.decision_timing(th, labels)
    assert all(t.n_mazes >= 30 and np.isfinite(t.rho) for t in timings)
    assert mi.supported_algorithm(timings) is None


def test_one_maze_or_an_untrained_match_names_nothing(mazes):
    images, labels = mazes
    one = mi.think(PlantedFiller(), images[:1], mi.default_ticks(labels, 1))
    timings = mi.decision_timing(one, MazeLabelsAt(labels, slice(0, 1)))
    assert timings[0].rho == 1.0 and timings[0].n_mazes == 1
    assert mi.supported_algorithm(timings) is None  # a CI of zero width from one maze is no evidence
    full = mi.decision_timing(mi.think(PlantedFiller(), images, mi.default_ticks(labels, 1)), labels)
    assert mi.supported_algorithm(full) == "dead-end filling"
    # an untrained network of the architecture that orders cells as well (here: the same filler) explains it away
    assert mi.supported_algorithm(full, full) is None


def MazeLabelsAt(labels, sl):
    return mi.MazeLabels(*(a[sl] for a in labels))


def test_recorded_hidden_states_are_the_models(mazes):
    images, labels = mazes
    model = RecallThinker(3, width=8, blocks=0, head_width=4, ticks=6, pointwise=1, key=jax.random.key(1))
    th = mi.think(model, images[:4], 6, record=(2, 6))
    logits, acts = jax.vmap(model)(jnp.asarray(images[:4]))
    np.testing.assert_allclose(th.hidden[2], np.asarray(acts["hidden"][:, 1]), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(th.hidden[6], np.asarray(acts["hidden"][:, 5]), rtol=1e-5, atol=1e-5)
    assert np.array_equal(th.final, np.asarray(logits[:, -1] >= 0))
    on = np.asarray(logits >= 0)  # [N, T, S, S]
    t = np.arange(1, 7)[None, :, None, None]
    assert np.array_equal(th.last_on, np.where(on, t, 0).max(1))
    assert np.array_equal(th.last_off, np.where(~on, t, 0).max(1))


def test_planted_representation_probes(mazes):
    images, labels = mazes
    rng = np.random.default_rng(0)
    noise = rng.normal(size=images.shape[:3] + (6,)).astype(np.float32)
    planted = np.concatenate([labels.path[..., None].astype(np.float32),
                              np.where(labels.free, labels.dist_start, 0)[..., None].astype(np.float32),
                              labels.fill_depth[..., None].astype(np.float32), noise], -1)
    got = {p.label: p for p in mi.probe_features(planted, labels, 5, "trained", n_boot=200)}
    assert got["on_path"].value == 1.0 and got["on_path"].selectivity > 0.3
    assert got["dist_start"].value > 0.99 and got["fill_depth"].value > 0.99
    assert got["dist_start"].selectivity > 0.9
    chance = {p.label: p for p in mi.probe_features(noise, labels, 5, "random-init", n_boot=200)}
    assert abs(chance["on_path"].value - 0.5) < 0.05
    for name in ("dist_start", "dist_goal", "fill_depth"):
        assert chance[name].value < 0.05
    for p in chance.values():
        assert abs(p.selectivity) <= 0.05
        assert p.ci[0] <= p.value <= p.ci[1]


# -- the reading (hand-built summaries) ------------------------------------------------------------------------------

def _summary(rho_fill, rho_wave, settled=1.0, solved=1.0, n_mazes=100, untrained=(0.0, 0.0), dist=(0.1, 0.0)):
    from mesalab.analysis.internals import Estimate
    from mesalab.analysis.maze_internals import MazeInternals, TickProbeRow, TimingRow, reading_sentence

    def est(v, w=0.02):
        return Estimate(v, v - w, v + w, 1)

    timing = []
    for source, (rf, rw) in (("trained", (rho_fill, rho_wave)), ("random-init", untrained)):
        timing += [TimingRow(21, source, "dead-end filling", est(rf), est(rf - rw), 1.0, settled, 1.0, solved, n_mazes, 99),
                   TimingRow(21, source, "wavefront from the ends", est(rw), est(rw - rf), 1.0, settled, 1.0, solved,
                             n_mazes, 99)]
    probes = [TickProbeRow(21, source, lab, "r2", 10, est(v), est(v)) for source, v in zip(("trained", "random-init"), dist)
              for lab in ("dist_start", "dist_goal")]
    m = MazeInternals([0], [21], 9, timing, probes, {})
    m.readings[21] = mi.supported_algorithm(m.timing_of(21), m.timing_of(21, "random-init"))
    return m, reading_sentence(m, 21)


def test_reading_names_filling_and_qualifies_weak_distances():
    m, text = _summary(0.95, -0.4)
    assert m.readings[21] == "dead-end filling"
    assert "supports dead-end filling" in text and "a little of distance from the start and distance from the goal" in text
    _, text = _summary(0.95, -0.4, dist=(0.8, 0.0))
    assert "also carries distance from the start" in text and "a little" not in text
    _, text = _summary(0.95, -0.4, dist=(0.03, 0.0))
    assert "not clearly better than an untrained network" in text


def test_reading_withholds_a_name_without_evidence():
    m, text = _summary(0.95, -0.4, untrained=(0.9, -0.3))  # an untrained network orders cells as well
    assert m.readings[21] is None and "supports" not in text
    m, text = _summary(0.95, -0.4, settled=0.2)  # rules out only a fifth of the cells
    assert m.readings[21] == "dead-end filling" and "too few to call this its solving algorithm" in text
    m, text = _summary(0.3, 0.3, solved=0.2)
    assert "fewer than half of these mazes" in text
    m, text = _summary(0.3, 0.25, n_mazes=4)
    assert "cannot tell the two apart here" in text
    m, text = _summary(0.3, 0.25)
    assert "neither algorithm alone explains the order" in text


def test_probe_folder_inputs_are_one_line(tmp_path):
    import json

    from mesalab.errors import ConfigError
    from mesalab.studies.contract import Options
    from mesalab.studies.maze_probe_run import MAZE_PROBE

    (tmp_path / "sweep.json").write_text(json.dumps({"kind": "extrapolation", "seeds": [0]}))
    with pytest.raises(ConfigError, match="no maze-path config"):
        MAZE_PROBE.configure(str(tmp_path), Options())
    (tmp_path / "sweep.json").write_text(json.dumps({"kind": "extrapolation", "seeds": [0], "config": {}}))
    with pytest.raises(ConfigError, match="no trained network of seed"):
        MAZE_PROBE.configure(str(tmp_path), Options())
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "seed_0.eqx").write_bytes(b"")
    with pytest.raises(ConfigError, match="no trained network of seed"):  # its config file is missing
        MAZE_PROBE.configure(str(tmp_path), Options())
    (tmp_path / "checkpoints" / "seed_0.eqx.json").write_text("{}")
    for opts, words in ((Options(levels=5), "--levels"), (Options(sizes=[8]), "odd"), (Options(max_ticks=0), "--max-ticks"),
                        (Options(layers=["conv_0"]), "--layer"), (Options(probe_seeds=[3]), "--seed"),
                        (Options(steps=4), "--steps")):
        with pytest.raises(ConfigError, match=words):
            MAZE_PROBE.configure(str(tmp_path), opts)
    assert MAZE_PROBE.configure(str(tmp_path), Options())["sizes"] == [9, 21]
