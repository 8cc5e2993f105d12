"""Tasks: pure-JAX gridworlds with explicit base objective, proxies and train/test distributions."""

from mesalab.tasks.grid import ACTIONS, COLOURS, OBJECT_TYPES, EnvParams, EnvState, GridEnv, Level, level_grid
from mesalab.tasks.objectives import Objective
from mesalab.tasks.registry import TASKS, Task, get_task, list_tasks
from mesalab.tasks.keys_chests.task import keys_chests_task

# keys-chests subclasses registry.Task, so the registry cannot import it without a cycle: it joins the registry here
TASKS.setdefault("keys-chests", keys_chests_task())

__all__ = ["ACTIONS", "COLOURS", "OBJECT_TYPES", "EnvParams", "EnvState", "GridEnv", "Level", "Objective",
           "TASKS", "Task", "get_task", "level_grid", "list_tasks"]
