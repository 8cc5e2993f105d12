"""Train a NumPy tabular Q-learning agent on green-door through mesalab's Gymnasium adapter, and save its table.

    python -m mesalab_green_door.train_q --steps 40000 --out q_table.npz
"""

import argparse

import numpy as np

import mesalab_green_door.tasks  # noqa: F401  (registers green-door)
from mesalab.tasks.gym_adapter import MesalabGymEnv
from mesalab_green_door.features import state_keys


def train(steps: int = 40_000, seed: int = 0, lr: float = 0.2, gamma: float = 0.95, epsilon: float = 0.2,
          n_levels: int = 512) -> dict[int, np.ndarray]:
    """Q-learning with epsilon-greedy exploration (epsilon falling linearly to 0.02) on the training distribution's
    levels; returns the table ``state key -> Q[4]``."""
    env = MesalabGymEnv("green-door", split="train", n_levels=n_levels, level_seed=seed)
    rng = np.random.default_rng(seed)
    q: dict[int, np.ndarray] = {}
    obs, _ = env.reset(seed=seed)
    key = int(state_keys(obs[None])[0])
    for t in range(steps):
        row = q.setdefault(key, np.zeros(4))
        eps = epsilon + (0.02 - epsilon) * t / steps
        action = int(rng.integers(4)) if rng.random() < eps else int(rng.choice(np.flatnonzero(row == row.max())))
        obs, reward, terminated, truncated, _ = env.step(action)
        next_key = int(state_keys(obs[None])[0])
        target = reward if terminated else reward + gamma * q.get(next_key, np.zeros(4)).max()
        row[action] += lr * (target - row[action])
        if terminated or truncated:
            obs, _ = env.reset()
            next_key = int(state_keys(obs[None])[0])
        key = next_key
    return q


def save(q: dict[int, np.ndarray], path: str) -> None:
    keys = np.array(sorted(q), np.int64)
    np.savez(path, keys=keys, q=np.stack([q[k] for k in keys]) if len(keys) else np.zeros((0, 4)))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="q_table.npz")
    args = parser.parse_args(argv)
    q = train(args.steps, args.seed)
    save(q, args.out)
    print(f"trained {args.steps} steps: {len(q)} states in the table -> {args.out}")


if __name__ == "__main__":
    main()
