"""mesalab benchmarks: environment throughput, end-to-end PPO throughput, the Gymnasium adapters' steps/s, and the
vmap-over-seeds hazard probe.

Usage (writes JSON, prints a summary):

    taskset -c 0 python benchmarks/run.py --out benchmarks/results/cpu.json
    taskset -c 0 python benchmarks/run.py --only gym   # only the Gymnasium adapters, merged into --out

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


def _spread(steps: int, seconds: list[float]) -> dict:
    """Steps/s of each repeat (``steps`` each): median, min, max and the relative spread (max - min) / median."""
    rates = sorted(steps / t for t in seconds)
    median = rates[len(rates) // 2]
    return {"steps_per_s_median": median, "steps_per_s_min": rates[0], "steps_per_s_max": rates[-1],
            "spread": (rates[-1] - rates[0]) / median, "seconds": seconds}


def _gym_single_runner(task_name: str = "red-door", backend: str = "numpy", obs_mode: str | None = None,
                       n_steps: int = 20_000, seed: int = 0):
    """``(description, run)``: ``run()`` times ``n_steps`` of ``MesalabGymEnv.step`` (seconds), resetting on every
    terminated or truncated, with uniformly random actions from ``numpy.random.default_rng(seed)``."""
    import numpy as np

    from mesalab.tasks.gym_adapter import MesalabGymEnv

    env = MesalabGymEnv(task_name, n_levels=256, obs_mode=obs_mode, backend=backend)
    actions = np.random.default_rng(seed).integers(0, env.action_space.n, size=n_steps).tolist()
    env.reset(seed=seed)
    episodes = [0]

    def run() -> float:
        t0 = time.perf_counter()
        for a in actions:
            _, _, terminated, truncated, _ = env.step(a)
            if terminated or truncated:
                env.reset()
                episodes[0] += 1
        return time.perf_counter() - t0

    desc = {"task": task_name, "backend": env.backend, "obs_mode": env.obs_mode, "n_steps": n_steps,
            "episodes": episodes}
    return desc, run


def _gym_vector_runner(num_envs: int = 64, task_name: str = "red-door", obs_mode: str | None = None,
                       n_calls: int = 500, seed: int = 0):
    """``(description, run)``: ``run()`` times ``n_calls`` of ``MesalabVectorEnv.step`` (``num_envs`` copies, their
    autoresets included) with uniformly random actions from ``numpy.random.default_rng(seed)``."""
    import numpy as np

    from mesalab.tasks.gym_vector import MesalabVectorEnv

    env = MesalabVectorEnv(task_name, num_envs=num_envs, n_levels=256, obs_mode=obs_mode)
    actions = np.random.default_rng(seed).integers(0, 4, size=(n_calls, num_envs)).astype(np.int32)
    env.reset(seed=seed)

    def run() -> float:
        t0 = time.perf_counter()
        for a in actions:
            env.step(a)
        return time.perf_counter() - t0

    desc = {"task": task_name, "obs_mode": env.obs_mode, "num_envs": num_envs, "n_calls": n_calls,
            "autoreset_mode": str(env.metadata["autoreset_mode"].value)}
    return desc, run


def _gym_entry(desc: dict, steps: int, seconds: list[float]) -> dict:
    out = {k: v for k, v in desc.items() if k != "episodes"}
    if "episodes" in desc:  # over every run, the warm-up's included
        out["mean_episode_steps"] = steps * (len(seconds) + 1) / max(desc["episodes"][0], 1)
    out.update(repeats=len(seconds), **_spread(steps, seconds))
    if "num_envs" in desc:
        out["us_per_call_median"] = 1e6 * desc["num_envs"] / out["steps_per_s_median"]
    return out


def _time_runners(runners: dict, repeats: int) -> dict:
    """Each runner's entry: one warm-up run, then ``repeats`` rounds in which every runner runs once in turn (so a
    slow spell of the machine hits them alike)."""
    times = {k: [] for k in runners}
    for i in range(repeats + 1):
        for k, (_, run) in runners.items():
            t = run()
            if i:
                times[k].append(t)
    steps = {k: d.get("n_steps", d.get("n_calls", 0) * d.get("num_envs", 1)) for k, (d, _) in runners.items()}
    return {k: _gym_entry(runners[k][0], steps[k], times[k]) for k in runners}


def gym_single_throughput(task_name: str = "red-door", backend: str = "numpy", obs_mode: str | None = None,
                          n_steps: int = 20_000, repeats: int = 5, seed: int = 0) -> dict:
    """``MesalabGymEnv.step`` steps/s, resets included, under uniformly random actions from a fixed NumPy RNG:
    median, min, max and spread of ``repeats`` runs of ``n_steps`` after a warm-up run. ``backend="jax"``: the
    per-step JAX dispatch path (the adapter before its NumPy step)."""
    return _time_runners({"x": _gym_single_runner(task_name, backend, obs_mode, n_steps, seed)}, repeats)["x"]


def gym_vector_throughput(num_envs: int = 64, task_name: str = "red-door", obs_mode: str | None = None,
                          n_calls: int = 500, repeats: int = 7, seed: int = 0) -> dict:
    """``MesalabVectorEnv.step`` env steps/s (``num_envs`` per call, autoresets included) under uniformly random
    actions from a fixed NumPy RNG: median, min, max and spread of ``repeats`` runs of ``n_calls`` calls after a
    warm-up run; ``us_per_call_median``: one ``step()`` of all copies."""
    return _time_runners({"x": _gym_vector_runner(num_envs, task_name, obs_mode, n_calls, seed)}, repeats)["x"]


def gym_results(repeats: int = 9) -> dict:
    """The Gymnasium adapters' entries of the results JSON (red-door, 256 levels, random actions), timed in
    alternating rounds: the NumPy single env, the JAX single env (the old per-step dispatch), the vector env of 64
    copies with the task's observation and with the lean one."""
    runners = {
        "gym_single": _gym_single_runner(),
        "gym_single_jax": _gym_single_runner(backend="jax", n_steps=1_000),
        "gym_vector_64": _gym_vector_runner(64),
        "gym_vector_64_lean": _gym_vector_runner(64, obs_mode="lean"),
    }
    return _time_runners(runners, repeats)


def print_gym(result: dict) -> None:
    for key in ("gym_single", "gym_single_jax"):
        if key in result:
            g = result[key]
            print(f"{key:<18} {g['steps_per_s_median'] / 1e3:8.1f} k steps/s (median of {g['repeats']}, "
                  f"{g['steps_per_s_min'] / 1e3:.1f}..{g['steps_per_s_max'] / 1e3:.1f} k; {g['backend']}, "
                  f"{g['obs_mode']}, resets included)")
    for key in ("gym_vector_64", "gym_vector_64_lean"):
        if key in result:
            g = result[key]
            print(f"{key:<18} {g['steps_per_s_median'] / 1e6:8.2f} M steps/s (median of {g['repeats']}, "
                  f"{g['steps_per_s_min'] / 1e6:.2f}..{g['steps_per_s_max'] / 1e6:.2f} M; "
                  f"{g['us_per_call_median']:.1f} us per step() of {g['num_envs']}, {g['obs_mode']})")


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
    ap.add_argument("--only", choices=["gym"], help="run only these benchmarks (gym: the Gymnasium adapters) and "
                    "merge their keys into the JSON already at --out, keeping every other key")
    args = ap.parse_args()
    import jax

    import mesalab

    if args.only == "gym":
        result = {}
        if os.path.exists(args.out):
            with open(args.out) as f:
                result = json.load(f)
        result.update(gym_results())
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
        print_gym(result)
        print(f"merged the gym entries into {args.out}")
        return

    result = {
        "mesalab": mesalab.__version__, "jax": jax.__version__, "backend": jax.default_backend(),
        "cores_pinned": len(os.sched_getaffinity(0)), "platform": platform.platform(),
        "env": [env_throughput(t, consume_obs=c) for c in (False, True) for t in ("red-door", "corner-goal", "maze")]
               + [env_throughput(t, obs_mode="lean") for t in ("red-door", "corner-goal", "maze")],
        "ppo": ppo_throughput(),
        "ppo_vs_peer": ppo_vs_peer(),
        "ppo_lean_vs_full": ppo_lean_vs_full(),
        **gym_results(),
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
    print_gym(result)
    if "vmap_seeds_two_threads_probe" in result:
        print(f"vmap-over-seeds probe on {result['vmap_seeds_two_threads_probe']['cores_available']} cores: "
              f"{'finished' if result['vmap_seeds_two_threads_probe']['finished'] else 'HUNG (timed out)'}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
