"""Time one seed of the ``icl-depth`` cells on one core: training the linear-attention ICL transformer for
layers = 1..4 (compile included: a fresh ``jax.jit(make_train(config))`` per depth, as a sweep worker does), and
the analysis, both the current ``analyse_model`` (``ood=False``, as ``icl_cell_measurement`` calls it; its GD
learning rates are tuned by one GD run per grid point) and ``diagnostics.icl_depth.depth_matches`` (the full
depth reference set with GD++, tuned in jitted spectral passes). Records which reference the final layer's
read-out matches best per depth and seed, and the depth verdict over the measured seeds.

Usage (pin to one core, as the sweep's workers are; writes JSON, prints one line per cell):

    taskset -c 1 python benchmarks/icl_depth_timing.py --out benchmarks/results/icl_depth_timing.json
    taskset -c 1 python benchmarks/icl_depth_timing.py --seeds 0 1 --steps 3000 --batch 1024 --n-eval 4000 \\
        --label defaults --out /tmp/t.json          # one settings block; several --label runs are merged into --out

Each ``--label`` run adds (or replaces) one block of ``runs`` in the output file, so the defaults and the chosen
preset settings can be measured separately and kept side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, nargs="+", default=[1, 2, 3, 4])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--steps", type=int, default=None, help="ICLConfig.steps (default: the ICLConfig default)")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--init-scale", type=float, default=None)
    ap.add_argument("--n-eval", type=int, default=4000, help="sequences for tuning and for testing the references")
    ap.add_argument("--analyse-model", choices=["first-seed", "all", "none"], default="first-seed",
                    help="also time analyse_model (slow: it tunes each GD learning rate with 60 separate GD runs)")
    ap.add_argument("--label", default="defaults")
    ap.add_argument("--out", default="benchmarks/results/icl_depth_timing.json")
    args = ap.parse_args()

    import jax
    import jax.numpy as jnp
    import numpy as np

    from mesalab.diagnostics.icl_depth import depth_matches, depth_verdict, final_layer_rows
    from mesalab.optimizers.supervised import ICLConfig, make_train

    try:  # the analysis module is being moved (icl_pipeline -> diagnostics.icl_analysis)
        from mesalab.diagnostics.icl_analysis import analyse_model
        ood_kw = {"ood": False}
    except ImportError:  # pragma: no cover
        from mesalab.icl_pipeline import analyse_model
        ood_kw = {}

    overrides = {k: v for k, v in (("steps", args.steps), ("batch", args.batch), ("lr", args.lr),
                                   ("init_scale", args.init_scale)) if v is not None}
    cells, tables = [], {}
    for layers in args.layers:
        config = ICLConfig(layers=layers, **overrides).validate()
        for i, seed in enumerate(args.seeds):
            t0 = time.perf_counter()
            model, metrics = jax.jit(make_train(config))(jax.random.key(jnp.uint32(seed)))
            loss = np.asarray(metrics["loss"])
            t1 = time.perf_counter()
            rows, refs = depth_matches(model, config, n_eval=args.n_eval)
            t2 = time.perf_counter()
            analyse_s = None
            if args.analyse_model == "all" or (args.analyse_model == "first-seed" and i == 0):
                analyse_model(model, config, n_eval=args.n_eval, **ood_kw)
                analyse_s = round(time.perf_counter() - t2, 2)
            final = final_layer_rows(rows, layers)
            tables.setdefault(seed, {})[layers] = final
            ranked = sorted(final, key=lambda r: -r["sensitivity_cosine"])
            cell = {"layers": layers, "seed": seed, "train_s": round(t1 - t0, 2), "depth_matches_s": round(t2 - t1, 2),
                    "analyse_model_s": analyse_s,
                    "final_train_loss": float(np.mean(loss[-max(1, len(loss) // 20):])),
                    "model_test_loss": float(rows[-1]["model_test_loss"]),
                    "best": ranked[0]["name"], "best_cosine": ranked[0]["sensitivity_cosine"],
                    "final_layer": {r["name"]: {"sensitivity_cosine": round(r["sensitivity_cosine"], 5),
                                                "prediction_mse": round(r["prediction_mse"], 5)} for r in final},
                    "gd_lrs": refs.gd_lrs, "gdpp_params": {k: list(v) for k, v in refs.gdpp_params.items()}}
            cells.append(cell)
            print(f"layers={layers} seed={seed} train {cell['train_s']:.1f}s depth_matches {cell['depth_matches_s']:.1f}s "
                  f"analyse_model {analyse_s}s loss {cell['final_train_loss']:.3f} best {cell['best']} "
                  f"({cell['best_cosine']:.4f})", flush=True)

    per_depth = {}
    for layers in args.layers:
        mine = [c for c in cells if c["layers"] == layers]
        per_depth[layers] = {"train_s_mean": float(np.mean([c["train_s"] for c in mine])),
                             "depth_matches_s_mean": float(np.mean([c["depth_matches_s"] for c in mine])),
                             "analyse_model_s": next((c["analyse_model_s"] for c in mine if c["analyse_model_s"]), None)}
    cell_s = sum(v["train_s_mean"] + v["depth_matches_s_mean"] for v in per_depth.values())
    verdict = depth_verdict(tables)
    block = {
        "settings": {**ICLConfig(**overrides).to_dict(), "n_eval": args.n_eval, "layers": args.layers,
                     "seeds": args.seeds},
        "cells": cells, "per_depth": per_depth,
        "preset_estimate": {
            "what": "4 depths x 5 seeds on 2 workers (one core each), trained + depth_matches, perfect packing",
            "seconds": round(cell_s * 5 / 2, 1), "budget_seconds": 1200,
            "max_cell_seconds": round(max(c["train_s"] + c["depth_matches_s"] for c in cells), 1)},
        "verdict_over_measured_seeds": {"verdict": verdict.verdict, "sentence": verdict.sentence},
        "machine": {"cpu": platform.processor() or platform.machine(), "affinity": sorted(os.sched_getaffinity(0)),
                    "jax": jax.__version__, "python": platform.python_version()},
        "measured": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    out = Path(args.out)
    data = json.loads(out.read_text()) if out.exists() else {}
    data.setdefault("runs", {})[args.label] = block
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1) + "\n")
    print(f"preset estimate {block['preset_estimate']['seconds']:.0f}s (budget 1200s); {verdict.sentence}")


if __name__ == "__main__":
    main()
