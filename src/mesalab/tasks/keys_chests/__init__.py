"""Keys and chests: pickups, an inventory in the state, and exact oracles over the enlarged state space.

- :mod:`~mesalab.tasks.keys_chests.env`: levels, pools, the functional environment and its observations;
- :mod:`~mesalab.tasks.keys_chests.generator`: the level distribution (keys scarce vs plentiful);
- :mod:`~mesalab.tasks.keys_chests.mdp`: a level as an explicit MDP over (taken slots, cell);
- :mod:`~mesalab.tasks.keys_chests.oracle`: fewest steps, optimal returns, shortest-path actions over it;
- :mod:`~mesalab.tasks.keys_chests.task`: the registered ``keys-chests`` task.
"""

from mesalab.tasks.keys_chests.env import (KeysChestsEnv, KeysChestsLevel, KeysChestsParams, KeysChestsState,
                                           pool_from_levels)
from mesalab.tasks.keys_chests.generator import Regime
from mesalab.tasks.keys_chests.mdp import CHEST_EVENT, KEY_EVENT, ProductMDP, pool_mdp, product_mdp
from mesalab.tasks.keys_chests.task import EventFeatures, EventObjective, KeysChestsTask, keys_chests_task

__all__ = ["CHEST_EVENT", "EventFeatures", "EventObjective", "KEY_EVENT", "KeysChestsEnv", "KeysChestsLevel",
           "KeysChestsParams", "KeysChestsState", "KeysChestsTask", "ProductMDP", "Regime", "keys_chests_task",
           "pool_from_levels", "pool_mdp", "product_mdp"]
