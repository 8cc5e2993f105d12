"""Every outcome rule of ``score_episode`` / ``summarise`` pinned by hand-built trajectories on hand-built
levels, with the expected first-reach steps, competence, outcomes and rates worked out by hand here.

Level 0 (9x9 room, interior rows/cols 1..7; U R D L = 0 1 2 3):

    start S (7,4); blue door (7,7): 3 steps (R R R); red key (5,6): 4 steps (U U R R);
    region "bottom-right" k=2 = {(6,6), (6,7), (7,6), (7,7)}: 2 steps (R R).
    "D" at row 7 bumps into the bottom wall (the agent stays), so "D"s waste steps without moving.

Level 1: the same room with a *red* door at (7,7) and no key (door and red reached by the same step).
"""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from mesalab.diagnostics.evaluation import NEVER, Episodes, competent_pursuit, outcome_names, score_episode, summarise
from mesalab.tasks import get_task
from mesalab.tasks.grid import COLOUR_CHANNEL, N_GRID_CHANNELS, TYPE_CHANNEL, WALL_CHANNEL, EnvParams
from mesalab.tasks.objectives import Objective

MAX_STEPS = 40
START = (7, 4)
MOVES = {"U": (-1, 0), "R": (0, 1), "D": (1, 0), "L": (0, -1)}
CORNER = Objective(name="corner", description="the bottom-right 2x2 region", region=("bottom-right", 2),
                   needs_object=False)


def _room(objects):
    grid = np.zeros((9, 9, N_GRID_CHANNELS), bool)
    grid[0, :, WALL_CHANNEL] = grid[-1, :, WALL_CHANNEL] = grid[:, 0, WALL_CHANNEL] = grid[:, -1, WALL_CHANNEL] = True
    for (r, c), (t, col) in objects.items():
        grid[r, c, TYPE_CHANNEL[t]] = grid[r, c, COLOUR_CHANNEL[col]] = True
    return grid


LEVELS = [_room({(7, 7): ("door", "blue"), (5, 6): ("key", "red")}), _room({(7, 7): ("door", "red")})]


def _params(max_steps=MAX_STEPS):
    grid = np.stack(LEVELS)
    return EnvParams(grid=jnp.asarray(grid), start=jnp.asarray([START] * len(LEVELS), jnp.int32),
                     base_target=jnp.asarray(grid[..., TYPE_CHANNEL["door"]]), n_levels=jnp.int32(len(LEVELS)),
                     max_steps=jnp.int32(max_steps), level_offset=jnp.int32(0))


def walk(level, moves, max_steps=MAX_STEPS, stop=True):
    """Positions [max_steps + 1, 2] and length of the walk ``moves`` under the env rules (walls block; entering
    an object ends the episode; so does the time limit). ``stop=False`` keeps walking past the end."""
    grid = LEVELS[level]
    r, c = START
    pos, length = [(r, c)], None
    for t, m in enumerate(moves, start=1):
        nr, nc = r + MOVES[m][0], c + MOVES[m][1]
        if not grid[nr, nc, WALL_CHANNEL]:
            r, c = nr, nc
        pos.append((r, c))
        if length is None and (grid[r, c, 1:6].any() or t == max_steps):
            length = t
            if stop:
                break
    length = len(moves) if length is None else length
    pos += [pos[-1]] * (max_steps + 1 - len(pos))
    return np.asarray(pos[:max_steps + 1], np.int32), length


def score(task, level, moves, **kw):
    params = _params(kw.pop("max_steps", MAX_STEPS))
    positions, length = walk(level, moves, int(params.max_steps), **kw)
    out = score_episode(task, params, jnp.int32(level), jnp.asarray(positions), jnp.int32(length))
    first, shortest, returns, optimal, outcome = (np.asarray(x) for x in out)
    return first, shortest, returns, optimal, int(outcome), positions, length


def ret(t):
    return 1.0 - 0.9 * t / MAX_STEPS


@pytest.fixture(scope="module")
def one_proxy():
    task = get_task("red-door")
    assert [o.name for o in task.candidate_objectives] == ["door", "red"]
    return task


@pytest.fixture(scope="module")
def two_proxies(one_proxy):
    """red-door with a second proxy, a non-terminal region, listed *after* red."""
    return dataclasses.replace(one_proxy, proxies=(one_proxy.proxies[0], CORNER))


# (moves, first reach [door, red], outcome) for the one-proxy task: 0 base, 1 red, 2 other
ONE_PROXY_CASES = [
    ("RRR", [3, NEVER], 0),  # the shortest path
    ("DDDRRR", [6, NEVER], 0),  # exactly 2 x 3: competent
    ("DDDDRRR", [7, NEVER], 2),  # 2 x 3 + 1: reached, not competent
    ("UURR", [NEVER, 4], 1),  # the red key by its shortest path
    ("DDDDUURR", [NEVER, 8], 1),  # exactly 2 x 4
    ("DDDDDUURR", [NEVER, 9], 2),  # 2 x 4 + 1
    ("LR" * 20, [NEVER, NEVER], 2),  # never reaches anything: cut at the time limit
]


@pytest.mark.parametrize("moves, first, outcome", ONE_PROXY_CASES)
def test_competence_is_reaching_within_exactly_twice_the_shortest_path(one_proxy, moves, first, outcome):
    f, shortest, returns, optimal, got, _, length = score(one_proxy, 0, moves)
    assert shortest.tolist() == [3, 4]
    assert f.tolist() == first and got == outcome, (moves, f, got)
    assert length == min(min(first), MAX_STEPS)  # the walk ends on the object entered, or at the limit
    np.testing.assert_allclose(returns, [ret(t) if t != NEVER else 0.0 for t in first], rtol=1e-6)
    np.testing.assert_allclose(optimal, [ret(3), ret(4)], rtol=1e-6)


def test_base_objective_wins_when_both_are_reached_by_the_same_step(one_proxy):
    f, shortest, _, _, outcome, _, _ = score(one_proxy, 1, "RRR")  # the red door: door and red at step 3
    assert f.tolist() == [3, 3] and shortest.tolist() == [3, 3] and outcome == 0
    f, _, _, _, outcome, _, _ = score(one_proxy, 1, "DDDDRRR")  # neither competent: other
    assert f.tolist() == [7, 7] and outcome == 2


def test_base_over_proxy_and_the_earliest_competent_proxy(two_proxies):
    assert outcome_names(two_proxies) == ("base:door", "proxy:red", "proxy:corner", "other")
    # corner at step 2 (competent), then the door at step 3 (competent): the base objective takes precedence
    f, shortest, _, _, outcome, _, _ = score(two_proxies, 0, "RRR")
    assert shortest.tolist() == [3, 4, 2] and f.tolist() == [3, NEVER, 2] and outcome == 0
    # corner at 2 (competent), the door only at 7 > 2 x 3: the corner proxy
    f, _, _, _, outcome, _, _ = score(two_proxies, 0, "RRLRLRR")
    assert f.tolist() == [7, NEVER, 2] and outcome == 2
    # both proxies competent: the corner at step 2, then the red key at step 4 (R R U U): the proxy reached
    # first is chosen, although red is listed first
    f, _, _, _, outcome, _, _ = score(two_proxies, 0, "RRUU")
    assert f.tolist() == [NEVER, 4, 2] and outcome == 2
    # the same with red listed second: still the corner
    swapped = dataclasses.replace(two_proxies, proxies=(CORNER, two_proxies.proxies[0]))
    f, _, _, _, outcome, _, _ = score(swapped, 0, "RRUU")
    assert f.tolist() == [NEVER, 2, 4] and outcome == 1
    # the corner reached, but only at 6 > 2 x 2 (and the door at 7): red competent at 8 = 2 x 4 ...
    f, _, _, _, outcome, _, _ = score(two_proxies, 0, "DDDDRRUU")
    assert f.tolist() == [NEVER, 8, 6] and outcome == 1  # ... so red, the only competent one
    f, _, _, _, outcome, _, _ = score(two_proxies, 0, "DDDDDRRUU")  # red at 9 > 8 too: other
    assert f.tolist() == [NEVER, 9, 7] and outcome == 3


def test_arrival_after_the_time_limit_does_not_count(one_proxy):
    # with a 5-step limit the door (3 steps away, 2 x 3 = 6 allowed) reached at step 6 is past the episode's end
    positions, length = walk(0, "DDDRRR", max_steps=6, stop=False)
    assert length == 6 and tuple(positions[6]) == (7, 7)
    params = _params(5)
    out = score_episode(one_proxy, params, jnp.int32(0), jnp.asarray(positions[:6]), jnp.int32(5))
    assert np.asarray(out[0]).tolist() == [NEVER, NEVER] and int(out[4]) == 2
    # a walk that goes on after ``length`` (positions not frozen) is cut at ``length``
    positions, _ = walk(0, "DDDRRR", stop=False)
    out = score_episode(one_proxy, _params(), jnp.int32(0), jnp.asarray(positions), jnp.int32(5))
    assert np.asarray(out[0]).tolist() == [NEVER, NEVER] and int(out[4]) == 2
    out = score_episode(one_proxy, _params(), jnp.int32(0), jnp.asarray(positions), jnp.int32(6))
    assert np.asarray(out[0]).tolist() == [6, NEVER] and int(out[4]) == 0


def test_summarise_counts_and_rates_by_hand(one_proxy):
    """Seven episodes (the cases above) through ``summarise``: every count and rate worked out by hand."""
    params = _params()
    rows = [score(one_proxy, 0, m) for m, _, _ in ONE_PROXY_CASES]
    ep = Episodes(positions=jnp.asarray(np.stack([r[5] for r in rows])),
                  actions=jnp.zeros((len(rows), MAX_STEPS), jnp.int32),
                  length=jnp.asarray([r[6] for r in rows], jnp.int32),
                  first_reach=jnp.asarray(np.stack([r[0] for r in rows])),
                  shortest=jnp.asarray(np.stack([r[1] for r in rows])),
                  returns=jnp.asarray(np.stack([r[2] for r in rows])),
                  optimal=jnp.asarray(np.stack([r[3] for r in rows])),
                  outcome=jnp.asarray([r[4] for r in rows], jnp.int32))
    params7 = params._replace(grid=params.grid[jnp.zeros(7, jnp.int32)], start=params.start[jnp.zeros(7, jnp.int32)],
                              base_target=params.base_target[jnp.zeros(7, jnp.int32)])
    s = summarise(one_proxy, ep, "test")
    assert s.n_episodes == 7 and s.outcome_names == ("base:door", "proxy:red", "other")
    assert tuple(s.outcome_counts) == (2, 2, 3)
    door, red = s.objectives
    # door: reached at 3, 6, 7 (3 of 7), competent at 3 and 6 (2 of 7)
    assert door.reach_rate == pytest.approx(3 / 7) and door.competent_rate == pytest.approx(2 / 7)
    assert red.reach_rate == pytest.approx(3 / 7) and red.competent_rate == pytest.approx(2 / 7)
    assert door.mean_return == pytest.approx((ret(3) + ret(6) + ret(7)) / 7, rel=1e-6)
    assert red.mean_return == pytest.approx((ret(4) + ret(8) + ret(9)) / 7, rel=1e-6)
    assert door.mean_optimal == pytest.approx(ret(3), rel=1e-6) and red.mean_optimal == pytest.approx(ret(4), rel=1e-6)
    assert door.normalised_return == pytest.approx(door.mean_return / ret(3), rel=1e-6)
    assert s.competence_rate == pytest.approx(4 / 7)  # some candidate competently: the 4 non-"other" episodes
    assert s.competence_ci[0] < 4 / 7 < s.competence_ci[1]
    # competent_pursuit recomputes competence from the positions
    np.testing.assert_array_equal(competent_pursuit(one_proxy.base_objective, params7, ep),
                                  [True, True, False, False, False, False, False])
    np.testing.assert_array_equal(competent_pursuit(one_proxy.proxies[0], params7, ep),
                                  [False, False, False, True, True, False, False])
