"""Recurrent PPO throughput on ``maze``: environment steps per second of one jitted training run (compilation
excluded) for the feed-forward MLP, the dense GRU at several ticks, and the ConvGRU (DRC-style).

Usage (pin to one core so the numbers are per core; writes JSON):

    taskset -c 0 python benchmarks/recurrent_ppo.py --out benchmarks/results/recurrent-ppo.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

CASES = [("mlp", 1, 65_536), ("gru", 1, 65_536), ("gru", 4, 65_536), ("gru", 8, 32_768), ("convgru", 1, 8_192),
         ("convgru", 2, 4_096)]


def measure(model: str, ticks: int, steps: int, seeds: int) -> dict:
    import jax
    import jax.numpy as jnp

    from mesalab.optimizers import PPOConfig, make_train

    cfg = PPOConfig(task="maze", model=model, ticks=ticks, total_steps=steps,
                    **({"width": 109, "depth": 1} if model == "gru" else {}))
    train = jax.jit(jax.vmap(make_train(cfg)))
    keys = jax.vmap(jax.random.key)(jnp.arange(seeds, dtype=jnp.uint32))
    t0 = time.perf_counter()
    jax.block_until_ready(train(keys))
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(train(jax.vmap(jax.random.key)(jnp.arange(seeds, dtype=jnp.uint32) + 100)))
    run = time.perf_counter() - t0
    return {"model": model, "ticks": ticks, "seeds": seeds, "env_steps": steps * seeds, "compile_and_run_s": first,
            "run_s": run, "env_steps_per_s": steps * seeds / run}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results/recurrent-ppo.json")
    ap.add_argument("--seeds", type=int, default=5)
    args = ap.parse_args()
    import jax

    rows = []
    for model, ticks, steps in CASES:
        rows.append(measure(model, ticks, steps, args.seeds))
        print(f"{model:8s} ticks={ticks}: {rows[-1]['env_steps_per_s']:9.0f} env steps/s "
              f"({args.seeds} seeds vmapped)", flush=True)
    result = {"cases": rows, "jax": jax.__version__, "machine": platform.machine(),
              "cores_visible": len(os.sched_getaffinity(0))}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
