"""Plain-Python reference implementations used as known answers in tests."""

from collections import deque

import numpy as np

from mesalab.tasks.grid import OBJECT_TYPES, WALL_CHANNEL

MOVES = [(-1, 0), (0, 1), (1, 0), (0, -1)]


def bfs_shortest(grid: np.ndarray, start, targets: np.ndarray, base_target: np.ndarray) -> int | None:
    """Fewest steps from start to a target under the env rules (objects and base targets are terminal)."""
    grid = np.asarray(grid)
    h, w = grid.shape[:2]
    walls = grid[..., WALL_CHANNEL]
    terminal = grid[..., 1 : 1 + len(OBJECT_TYPES)].any(-1) | base_target
    start = (int(start[0]), int(start[1]))
    if targets[start]:
        return 0
    dist = {start: 0}
    q = deque([start])
    while q:
        cell = q.popleft()
        if cell != start and terminal[cell]:
            continue
        for dr, dc in MOVES:
            n = (cell[0] + dr, cell[1] + dc)
            if 0 <= n[0] < h and 0 <= n[1] < w and not walls[n] and n not in dist:
                dist[n] = dist[cell] + 1
                if targets[n]:
                    return dist[n]
                q.append(n)
    return None


def connected(free: np.ndarray) -> bool:
    cells = list(zip(*np.nonzero(free)))
    if not cells:
        return True
    seen = {cells[0]}
    q = deque([cells[0]])
    while q:
        r, c = q.popleft()
        for dr, dc in MOVES:
            n = (r + dr, c + dc)
            if 0 <= n[0] < free.shape[0] and 0 <= n[1] < free.shape[1] and free[n] and n not in seen:
                seen.add(n)
                q.append(n)
    return len(seen) == len(cells)
