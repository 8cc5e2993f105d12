"""Tasks: pure-JAX gridworlds with explicit base objective, proxies and train/test distributions.

Everything a task family of your own needs is exported here (see README, "Your own task and agent"):

- the level: :class:`Level` (walls, objects with type and colour indices :data:`TYPE_INDEX` / :data:`COLOUR_INDEX`
  of :data:`OBJECT_TYPES` / :data:`COLOURS`, and the agent's start), built by a *generator*
  ``generator(key, dist, shape) -> Level`` from the building blocks :func:`generate_walls` (a connected random
  maze with a wall-density dial), :func:`place_objects` (distinct free cells, the first in a region) and
  :func:`corner_region`;
- the distribution as data: :class:`Distribution` / :func:`make_distribution` (wall density, distractors,
  disambiguating fraction alpha, corner size: arrays, so shifts are data), and the static :class:`LevelShape`;
- the objectives: :class:`Objective` (base objective, proxies), :class:`FeatureBasis` (the reward basis of inverse
  RL), :class:`Probe` (extra evaluation splits);
- :class:`Task` bundling them, and :func:`register_task` to add it to the registry (then every command finds it
  by name; a plugin module does this when imported, :mod:`mesalab.plugins`).
"""

from mesalab.tasks.families import (COLOUR_INDEX, TYPE_INDEX, Distribution, LevelShape, make_distribution,
                                    place_objects)
from mesalab.tasks.features import FeatureBasis, corners
from mesalab.tasks.grid import (ACTIONS, CHANNEL_NAMES, COLOURS, OBJECT_TYPES, EnvParams, EnvState, GridEnv, Level,
                                level_grid)
from mesalab.tasks.mazegen import generate_walls
from mesalab.tasks.objectives import Objective, corner_region
from mesalab.tasks.registry import TASKS, Probe, Task, get_task, list_tasks, register_task, task_plugin
from mesalab.tasks.keys_chests.task import keys_chests_task

# keys-chests subclasses registry.Task, so the registry cannot import it without a cycle: it joins the registry here
TASKS.setdefault("keys-chests", keys_chests_task())

__all__ = ["ACTIONS", "CHANNEL_NAMES", "COLOURS", "COLOUR_INDEX", "Distribution", "EnvParams", "EnvState",
           "FeatureBasis", "GridEnv", "Level", "LevelShape", "OBJECT_TYPES", "Objective", "Probe", "TASKS",
           "TYPE_INDEX", "Task", "corner_region", "corners", "generate_walls", "get_task", "level_grid", "list_tasks",
           "make_distribution", "place_objects", "register_task", "task_plugin"]
