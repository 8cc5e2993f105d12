"""The trained tabular agent as the callable ``mesalab diagnose --policy mesalab_green_door.agent:probs`` takes.

``probs(obs uint8[B, H, W, C]) -> float[B, 4]``: greedy on the saved Q-table (ties split evenly) with probability
``1 - EPSILON``, uniform otherwise; a state the table never saw gets uniform probabilities. The table is read from
``$GREEN_DOOR_Q_TABLE`` (default ``q_table.npz`` in the working directory) on the first call.
"""

import os
from functools import lru_cache

import numpy as np

from mesalab_green_door.features import state_keys

EPSILON = 0.05


@lru_cache(maxsize=None)
def _table(path: str) -> tuple[np.ndarray, np.ndarray]:
    data = np.load(path)
    return data["keys"], data["q"]


def probs(obs: np.ndarray) -> np.ndarray:
    keys, q = _table(os.environ.get("GREEN_DOOR_Q_TABLE", "q_table.npz"))
    k = state_keys(obs)
    idx = np.searchsorted(keys, k)
    idx = np.minimum(idx, max(len(keys) - 1, 0))
    known = (len(keys) > 0) & (keys[idx] == k) if len(keys) else np.zeros(len(k), bool)
    rows = q[idx] if len(keys) else np.zeros((len(k), 4))
    best = (rows == rows.max(axis=1, keepdims=True)).astype(np.float64)
    greedy = best / best.sum(axis=1, keepdims=True)
    p = (1 - EPSILON) * greedy + EPSILON / 4
    return np.where(known[:, None], p, 0.25)
