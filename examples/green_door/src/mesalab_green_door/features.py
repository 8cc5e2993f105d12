"""The tabular agent's state: what it reads from mesalab's observation (the observation contract: one-hot channels
named by ``mesalab.tasks.CHANNEL_NAMES``, an egocentric window centred on the agent).

The state is the offset of the nearest *green* object from the agent and whether each neighbouring cell (up, right,
down, left) is a wall: a table over it generalises across levels, and it knows only colour, not type.
"""

import numpy as np

from mesalab.tasks import CHANNEL_NAMES

GREEN = CHANNEL_NAMES.index("colour:green")
WALL = CHANNEL_NAMES.index("wall")
NONE = 99  # the offset when no green object is in view
NEIGHBOURS = ((-1, 0), (0, 1), (1, 0), (0, -1))  # up, right, down, left: mesalab's action order


def state_keys(obs: np.ndarray) -> np.ndarray:
    """``int64[B]``: one integer per observation ``uint8[B, H, W, C]`` (egocentric, the agent at the centre)."""
    obs = np.asarray(obs)
    b, h, w, _ = obs.shape
    cr, cc = h // 2, w // 2
    rows, cols = np.mgrid[0:h, 0:w]
    dist = np.abs(rows - cr) + np.abs(cols - cc)
    green = obs[..., GREEN] > 0
    masked = np.where(green, dist[None], 10**6).reshape(b, -1)
    nearest = masked.argmin(axis=1)
    seen = masked.min(axis=1) < 10**6
    dr = np.where(seen, nearest // w - cr, NONE)
    dc = np.where(seen, nearest % w - cc, NONE)
    walls = [obs[:, cr + r, cc + c, WALL].astype(np.int64) for r, c in NEIGHBOURS]
    bits = walls[0] + 2 * walls[1] + 4 * walls[2] + 8 * walls[3]
    return ((dr + 128) * 256 + (dc + 128)) * 16 + bits
