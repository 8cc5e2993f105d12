"""mesalab benchmarks: environment throughput, end-to-end PPO throughput, and the vmap-over-seeds hazard probe.

Usage (writes JSON, prints a summary):

    taskset -c 0 python benchmarks/run.py --out benchmarks/results/cpu.json

Pin to one core with taskset so "per core" numbers mean what they say. Each number is measured here, now;
nothing is hard-coded. The hang probe runs vmapped PPO with two XLA threads in a subprocess with a timeout
(see design.md: it deadlocked on two cores with jax 0.10.2).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time


def env_throughput(task_name: str, n_envs: int = 4096, n_steps: int = 200, repeats: int = 3,
                   consume_obs: bool = True, obs_mode: str | None = None) -> dict:
    """Vmapped, jitted env steps/s. ``consume_obs``: read every observation element (else only reward, done
    and the agent's position are used, so XLA may skip building observations: the transition cost)."""
    import jax
    import jax.numpy as jnp

    from mesalab.tasks import get_task

    task = get_task(task_name)
    env = task.env_for(obs_mode or task.obs_mode)
    params = task.sample_params_checked(jax.random.key(0), "train", 1024)

    @jax.jit
    def run(key):
        obs, st = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key, n_envs), params)

        def body(c, k):
            st, acc = c
            ka, ks = jax.random.split(k)
            a = jax.random.randint(ka, (n_envs,), 0, 4)
            obs, st, r, d, _ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(jax.random.split(ks, n_envs), st, a, params)
            acc = acc + r.sum() + d.sum(dtype=jnp.int32).astype(jnp.float32) + st.pos.sum().astype(jnp.float32)
            if consume_obs:  # read the whole observation so none of it is optimised away
                acc = acc + obs.sum(dtype=jnp.int32).astype(jnp.float32)
            return (st, acc), None

        (_, acc), _ = jax.lax.scan(body, (st, jnp.float32(0)), jax.random.split(key, n_steps))
        return acc

    run(jax.random.key(1)).block_until_ready()
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        run(jax.random.key(2 + i)).block_until_ready()
        times.append(time.perf_counter() - t0)
    best = min(times)
    return {"task": task_name, "obs_mode": env.obs_mode, "observation_consumed": consume_obs, "n_envs": n_envs,
            "n_steps": n_steps,
            "steps_per_s_best": n_envs * n_steps / best, "steps_per_s_median": n_envs * n_steps / sorted(times)[len(times) // 2]}


def ppo_throughput(total_steps: int = 262_144) -> dict:
    import jax

    from mesalab.optimizers import PPOConfig, make_train

    cfg = PPOConfig(total_steps=total_steps)
    train = jax.jit(make_train(cfg))
    t0 = time.perf_counter()
    compiled = train.lower(jax.random.key(0)).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, m = compiled(jax.random.key(0))
    jax.block_until_ready(m)
    dt = time.perf_counter() - t0
    steps = cfg.num_updates * cfg.steps_per_update
    return {"task": cfg.task, "model": cfg.model, "width": cfg.width, "depth": cfg.depth, "env_steps": steps,
            "compile_s": compile_s, "train_s": dt, "env_steps_per_s": steps / dt,
            "final_success_rate": float(m["success_rate"][-1])}


def time_alternately(programs: dict, repeats: int) -> dict[str, list[float]]:
    """Seconds of each compiled ``program(key)``, run in turn ``repeats`` times after one warm-up round (so drift in
    the machine's speed hits every program alike)."""
    import jax

    times: dict[str, list[float]] = {n: [] for n in programs}
    for i in range(repeats + 1):
        for name, f in programs.items():
            t0 = time.perf_counter()
            jax.block_until_ready(f(jax.random.key(i)))
            if i:
                times[name].append(time.perf_counter() - t0)
    return times


def ppo_vs_peer(total_steps: int = 131_072, repeats: int = 3) -> dict:
    """mesalab's PPO and the minimal peer (``benchmarks/peer_ppo.py``) on the same env, network and settings
    (red-door, a fixed pool of 512 levels, MLP 128x2, 64 envs x 64 steps, 4 epochs x 4 minibatches), timed
    alternately in this process: steps/s of each (best and median of ``repeats``) and mesalab / peer."""
    import jax

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from peer_ppo import make_peer_train

    from mesalab.optimizers import PPOConfig, make_train

    cfg = PPOConfig(total_steps=total_steps, n_levels=512)
    programs = {
        "mesalab": jax.jit(make_train(cfg)),
        "peer": jax.jit(make_peer_train(cfg.task, total_steps=total_steps, n_levels=512, width=cfg.width,
                                        depth=cfg.depth)),
    }
    compiled, compile_s = {}, {}
    for name, f in programs.items():
        t0 = time.perf_counter()
        compiled[name] = f.lower(jax.random.key(0)).compile()
        compile_s[name] = time.perf_counter() - t0
    steps = cfg.num_updates * cfg.steps_per_update
    times = time_alternately(compiled, repeats)
    out = {"task": cfg.task, "n_levels": 512, "env_steps": steps, "repeats": repeats}
    for name in programs:
        ts = sorted(times[name])
        out[name] = {"compile_s": compile_s[name], "seconds": ts, "steps_per_s_best": steps / ts[0],
                     "steps_per_s_median": steps / ts[len(ts) // 2]}
    out["ratio_median"] = out["mesalab"]["steps_per_s_median"] / out["peer"]["steps_per_s_median"]
    return out


def ppo_lean_vs_full(tasks: tuple[str, ...] = ("red-door", "corner-goal-13"), total_steps: int = 131_072,
                     repeats: int = 3) -> list[dict]:
    """PPO steps/s with the full egocentric view against the lossless ``lean`` one (same task, network, settings
    and fixed pool of 512 levels), timed alternately in this process; ``ratio`` = lean / full (median of
    ``repeats``)."""
    import jax

    from mesalab.optimizers import PPOConfig, make_train
    from mesalab.tasks import get_task

    out = []
    for name in tasks:
        programs, shapes = {}, {}
        for mode in ("egocentric", "lean"):
            cfg = PPOConfig(task=name, total_steps=total_steps, n_levels=512, obs_mode=mode)
            programs[mode] = jax.jit(make_train(cfg)).lower(jax.random.key(0)).compile()
            shapes[mode] = list(get_task(name).env_for(mode).obs_shape)
        steps = cfg.num_updates * cfg.steps_per_update
        times = time_alternately(programs, repeats)
        row = {"task": name, "env_steps": steps, "repeats": repeats}
        for mode in programs:
            ts = sorted(times[mode])
            row[mode] = {"obs_shape": shapes[mode], "seconds": ts, "steps_per_s_median": steps / ts[len(ts) // 2]}
        row["ratio_median"] = row["lean"]["steps_per_s_median"] / row["egocentric"]["steps_per_s_median"]
        out.append(row)
    return out


PROBE = """
import jax
from mesalab.optimizers import PPOConfig, make_train
cfg = PPOConfig(total_steps=65536, num_envs=32, rollout_len=32, width=64)
m = jax.jit(jax.vmap(make_train(cfg)))(jax.random.split(jax.random.key(0), 2))
jax.block_until_ready(m)
print("ok")
"""


def vmap_hang_probe(timeout_s: int = 180) -> dict:
    """Does vmapped PPO over 2 seeds finish with all cores available to XLA?"""
    cores = sorted(os.sched_getaffinity(0))
    t0 = time.perf_counter()
    try:
        out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=timeout_s)
        finished = out.returncode == 0 and "ok" in out.stdout
    except subprocess.TimeoutExpired:
        finished = False
    return {"cores_available": len(cores), "timeout_s": timeout_s, "finished": finished,
            "seconds": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/results/cpu.json")
    ap.add_argument("--skip-probe", action="store_true", help="skip the vmap hang probe")
    args = ap.parse_args()
    import jax

    import mesalab

    result = {
        "mesalab": mesalab.__version__, "jax": jax.__version__, "backend": jax.default_backend(),
        "cores_pinned": len(os.sched_getaffinity(0)), "platform": platform.platform(),
        "env": [env_throughput(t, consume_obs=c) for c in (False, True) for t in ("red-door", "corner-goal", "maze")]
               + [env_throughput(t, obs_mode="lean") for t in ("red-door", "corner-goal", "maze")],
        "ppo": ppo_throughput(),
        "ppo_vs_peer": ppo_vs_peer(),
        "ppo_lean_vs_full": ppo_lean_vs_full(),
    }
    if not args.skip_probe:
        # the probe needs more than one core to show the hazard: give its subprocess every core
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
        result["vmap_seeds_two_threads_probe"] = vmap_hang_probe()
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    for e in result["env"]:
        what = "with full observation" if e["observation_consumed"] else "transition only"
        print(f"env {e['task']:<12} {e['steps_per_s_best'] / 1e6:6.2f} M steps/s ({what}, {e['obs_mode']}, {e['n_envs']} envs)")
    p = result["ppo"]
    print(f"ppo {p['task']:<12} {p['env_steps_per_s'] / 1e3:6.1f} k steps/s (compile {p['compile_s']:.1f} s)")
    q = result["ppo_vs_peer"]
    print(f"ppo vs peer  mesalab {q['mesalab']['steps_per_s_median'] / 1e3:6.1f} k, peer "
          f"{q['peer']['steps_per_s_median'] / 1e3:6.1f} k steps/s (median of {q['repeats']}): "
          f"ratio {q['ratio_median']:.2f}")
    for q in result["ppo_lean_vs_full"]:
        print(f"ppo {q['task']:<14} lean {q['lean']['obs_shape']} {q['lean']['steps_per_s_median'] / 1e3:6.1f} k vs "
              f"full {q['egocentric']['obs_shape']} {q['egocentric']['steps_per_s_median'] / 1e3:6.1f} k steps/s: "
              f"x{q['ratio_median']:.2f}")
    if "vmap_seeds_two_threads_probe" in result:
        print(f"vmap-over-seeds probe on {result['vmap_seeds_two_threads_probe']['cores_available']} cores: "
              f"{'finished' if result['vmap_seeds_two_threads_probe']['finished'] else 'HUNG (timed out)'}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
