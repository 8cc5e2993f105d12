"""The maze-path bar: train a recall "thinking" network on 9×9 mazes, then measure exact accuracy versus ticks
on unseen mazes of several sizes (test-time compute scaling and size extrapolation).

Usage (writes JSON and the trained model):

    python benchmarks/maze_path.py --out benchmarks/results/maze-path.json

The training time is measured on its own (the bar: ≤ 30 minutes on a 2-core CPU); the evaluation runs after it.
``--config FILE`` overrides training settings (``ThinkingConfig`` keys); ``--model FILE`` skips training and
evaluates a saved model. The figure of accuracy versus ticks per size is written next to the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results/maze-path.json")
    ap.add_argument("--config", default=None, help="JSON file of ThinkingConfig overrides")
    ap.add_argument("--model", default=None, help="evaluate this saved model instead of training")
    ap.add_argument("--sizes", default="9,13,21,33")
    ap.add_argument("--max-ticks", type=int, default=400)
    ap.add_argument("--mazes", type=int, default=200, help="unseen mazes per size")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import jax

    from mesalab.diagnostics.compute_scaling import maze_path_compute_scaling
    from mesalab.optimizers.thinking import ThinkingConfig, load_model, make_train, save_model
    from mesalab.report.figures import compute_scaling_figure

    overrides = json.load(open(args.config)) if args.config else {}
    config = ThinkingConfig.from_dict(overrides)
    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    stem = os.path.splitext(os.path.abspath(args.out))[0]
    result = {"config": config.to_dict(), "seed": args.seed, "machine": platform.machine(),
              "cpus": os.cpu_count(), "jax": jax.__version__}
    if args.model:
        model = load_model(args.model, config)
        result["model"] = args.model
    else:
        last = [0.0]

        def progress(i, n):
            if time.time() - last[0] > 30 or i == n:
                last[0] = time.time()
                print(f"step {i}/{n}", flush=True)

        t0 = time.perf_counter()
        model, metrics = make_train(config, progress)(jax.random.PRNGKey(args.seed))
        result["train_wall_s"] = time.perf_counter() - t0
        result["train_accuracy_curve"] = {"step": metrics["eval_step"].tolist(),
                                          "accuracy": metrics["train_accuracy"].tolist()}
        result["final_loss"] = float(metrics["loss"][-1])
        save_model(stem + ".eqx", model, config)
        result["model"] = stem + ".eqx"
        print(f"trained in {result['train_wall_s'] / 60:.1f} min", flush=True)
    sizes = [int(s) for s in args.sizes.split(",")]
    t0 = time.perf_counter()
    cs = maze_path_compute_scaling(model, jax.random.PRNGKey(10_000 + args.seed), sizes, args.max_ticks,
                                   args.mazes, trained_size=config.size)
    result["eval_wall_s"] = time.perf_counter() - t0
    result["summary"] = cs.summary()
    result["accuracy_per_tick"] = {int(s): cs.accuracy[k].tolist() for k, s in enumerate(cs.sizes)}
    compute_scaling_figure(cs).savefig(stem + ".png", dpi=110)
    for row in result["summary"]:
        print(f"{row['size']:>3}x{row['size']:<3} at {config.ticks} ticks: {row['accuracy_at_trained_ticks']:.3f}"
              f"   best {row['accuracy_at_best_ticks']:.3f} at {row['best_ticks']} ticks"
              f"   gain {row['gain']:+.3f} [{row['gain_ci'][0]:+.3f}, {row['gain_ci'][1]:+.3f}]", flush=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
