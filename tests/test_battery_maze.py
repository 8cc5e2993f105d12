"""The planted-agent battery on `maze`: every agent's verdict and test-split reading are the known right ones
(see tests/planted_battery.py). Episode seed 0 here; seeds 1 and 2 in the slow set (3 seeds in all)."""

import pytest

from planted_battery import N_EPISODES, battery, check_case, run_case
from mesalab.diagnostics import evaluation_levels
from mesalab.tasks import get_task

TASK = get_task("maze")
POOLS = {s: evaluation_levels(TASK, s, N_EPISODES) for s in ("train", "test")}
CASES = battery("maze", POOLS["train"].grid)


@pytest.mark.parametrize("name", list(CASES))
def test_verdict_and_reading(name):
    check_case(name, CASES[name], *run_case(TASK, CASES[name], POOLS, seed=0))


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("name", list(CASES))
def test_verdict_and_reading_more_episode_seeds(name, seed):
    check_case(name, CASES[name], *run_case(TASK, CASES[name], POOLS, seed=seed))
