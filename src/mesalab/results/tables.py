"""Every results table, its columns declared once.

A :class:`Table` names its columns and their DuckDB types; ``table.row(**values)`` builds a row (a named tuple,
so a row is built by column name, next to nothing positional) and ``table.ddl()`` the ``CREATE TABLE``
statement. A :class:`Schema` is the set of tables one kind of folder's database holds. The study kinds
(:mod:`mesalab.studies`) say which schema they write; nothing else spells a column list.
"""

from __future__ import annotations

import sys
import zlib
from collections import namedtuple
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[tuple[str, str], ...]  # (column, DuckDB type)
    key: tuple[str, ...] = ()  # primary key columns (none: rows may repeat)
    row: type = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        # the row class lives in this module under a name of its own, so rows pickle (they travel from workers)
        cls_name = f"{self.name}_row_{zlib.crc32(repr(self.columns).encode()):08x}"  # same in every process
        cls = getattr(sys.modules[__name__], cls_name, None)
        if cls is None:
            cls = namedtuple(cls_name, [c for c, _ in self.columns])
            cls.__module__ = __name__
            setattr(sys.modules[__name__], cls_name, cls)
        object.__setattr__(self, "row", cls)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c for c, _ in self.columns)

    def ddl(self, if_not_exists: bool = True) -> str:
        cols = [f"{c} {t}" for c, t in self.columns]
        if self.key:
            cols.append(f"PRIMARY KEY ({', '.join(self.key)})")
        return f"CREATE TABLE {'IF NOT EXISTS ' if if_not_exists else ''}{self.name} ({', '.join(cols)})"

    def check(self, row: tuple) -> tuple:
        """``row`` as this table's row (a one-line error naming the table when its width is wrong)."""
        if isinstance(row, self.row):
            return row
        if len(row) != len(self.columns):
            raise ValueError(f"a row of {self.name} has {len(row)} values for its {len(self.columns)} columns "
                             f"{self.column_names}")
        return self.row(*row)


def _t(name: str, spec: str, key: tuple[str, ...] = ()) -> Table:
    """A table from ``"col TYPE, col TYPE, ..."`` (types may hold no commas)."""
    cols = tuple(tuple(part.strip().split(None, 1)) for part in spec.split(","))
    return Table(name, cols, key)


@dataclass(frozen=True)
class Schema:
    name: str
    tables: tuple[Table, ...]

    def __getitem__(self, name: str) -> Table:
        for t in self.tables:
            if t.name == name:
                return t
        raise KeyError(f"{self.name} results have no table {name!r}; tables: {[t.name for t in self.tables]}")

    def __contains__(self, name: str) -> bool:
        return any(t.name == name for t in self.tables)

    def ddl(self, if_not_exists: bool = True) -> str:
        return ";\n".join(t.ddl(if_not_exists) for t in self.tables) + ";"


# -- a gridworld PPO run (``mesalab run TASK``) ----------------------------------------------------------------
RUNS = _t("runs", "seed INTEGER, task VARCHAR, config JSON, versions JSON, created VARCHAR", ("seed",))
TRAINING_CURVES = _t("training_curves", "seed INTEGER, update_index INTEGER, env_steps BIGINT, metric VARCHAR, "
                     "value DOUBLE")
EVALUATIONS = _t("evaluations", "seed INTEGER, split VARCHAR, objective VARCHAR, is_base BOOLEAN, n_episodes INTEGER, "
                 "competent_rate DOUBLE, ci_low DOUBLE, ci_high DOUBLE, reach_rate DOUBLE, mean_return DOUBLE, "
                 "mean_optimal DOUBLE, normalised_return DOUBLE")
OUTCOMES = _t("outcomes", "seed INTEGER, split VARCHAR, outcome VARCHAR, count INTEGER")
COMPETENCE = _t("competence", "seed INTEGER, split VARCHAR, rate DOUBLE, ci_low DOUBLE, ci_high DOUBLE")
VERDICTS = _t("verdicts", "seed INTEGER, label VARCHAR, proxy VARCHAR, confidence DOUBLE, class_probabilities JSON, "
              "n_episodes INTEGER, text VARCHAR", ("seed",))
RUN_LEVELS = _t("levels", "split VARCHAR, level INTEGER, height INTEGER, width INTEGER, channels INTEGER, "
                "grid BOOLEAN[], start_row INTEGER, start_col INTEGER")
TRAJECTORIES = _t("trajectories", "seed INTEGER, split VARCHAR, level INTEGER, rows INTEGER[], cols INTEGER[], "
                  "outcome VARCHAR")
COMPUTE_SCALING = _t("compute_scaling", "seed INTEGER, ticks INTEGER, trained_ticks INTEGER, successes INTEGER, "
                     "n_episodes INTEGER, success_rate DOUBLE, ci_low DOUBLE, ci_high DOUBLE")
IRL_WEIGHTS = _t("irl_weights", "seed INTEGER, split VARCHAR, feature VARCHAR, position INTEGER, weight DOUBLE, "
                 "normalised DOUBLE, ci_low DOUBLE, ci_high DOUBLE")
BEHAVIORAL_OBJECTIVES = _t("behavioral_objectives", "seed INTEGER, split VARCHAR, dominant VARCHAR, "
                           "dominant_weight DOUBLE, scale DOUBLE, fitted_ll DOUBLE, uniform_ll DOUBLE, ceiling_ll DOUBLE, "
                           "goal_directedness DOUBLE, goal_directedness_nats DOUBLE, aliases JSON, absent JSON, "
                           "n_levels INTEGER, n_actions INTEGER, reading VARCHAR")
CANDIDATE_LIKELIHOODS = _t("candidate_likelihoods", "seed INTEGER, split VARCHAR, candidate VARCHAR, beta DOUBLE, "
                           "held_out_ll DOUBLE")
OPTIMIZATION_POWER = _t("optimization_power", "seed INTEGER, split VARCHAR, objective VARCHAR, n_levels INTEGER, "
                        "mean_bits DOUBLE, ci_low DOUBLE, ci_high DOUBLE, optimal_mean_bits DOUBLE, "
                        "fraction_of_ceiling DOUBLE, histogram_edges DOUBLE[], histogram_counts INTEGER[]")
LEVEL_BITS = _t("level_bits", "seed INTEGER, split VARCHAR, objective VARCHAR, level INTEGER, bits DOUBLE, "
                "optimal_bits DOUBLE")
# what it pursues on each split (diagnostics.probe_pursuit), the verdict on each probe split, and the overlap check
PROBE_PURSUIT = _t("probe_pursuit", "seed INTEGER, split VARCHAR, feature_set VARCHAR, n_present INTEGER, "
                   "n_pursued INTEGER, n_ended_on_object INTEGER, n_ended_in_set INTEGER, rate DOUBLE, ci_low DOUBLE, "
                   "ci_high DOUBLE, precision DOUBLE")
PROBE_READINGS = _t("probe_readings", "seed INTEGER, feature_set VARCHAR, size INTEGER, competent BOOLEAN, text VARCHAR",
                    ("seed",))
PROBE_VERDICTS = _t("probe_verdicts", "seed INTEGER, split VARCHAR, label VARCHAR, proxy VARCHAR, confidence DOUBLE, "
                    "n_episodes INTEGER, text VARCHAR", ("seed", "split"))
SPLIT_OVERLAPS = _t("split_overlaps", "seed INTEGER, split VARCHAR, n_levels INTEGER, n_training_levels BIGINT, "
                    "n_overlap INTEGER", ("seed", "split"))
EPIC_DISTANCES = _t("epic_distances", "seed INTEGER, split VARCHAR, candidate VARCHAR, distance DOUBLE, ci_low DOUBLE, "
                    "ci_high DOUBLE, n_levels INTEGER, n_replicates INTEGER")
# keys-chests: chests opened, keys collected, spare keys collected per seed and split (diagnostics.keys_chests)
EVENT_RATES = _t("event_rates", "seed INTEGER, split VARCHAR, event VARCHAR, count BIGINT, possible BIGINT, "
                 "rate DOUBLE, ci_low DOUBLE, ci_high DOUBLE", ("seed", "split", "event"))
# written by `mesalab run` and rewritten by `mesalab diagnose`
OBJECTIVE_TABLES = ("irl_weights", "behavioral_objectives", "candidate_likelihoods", "optimization_power",
                    "level_bits", "epic_distances")
RUN_SCHEMA = Schema("run", (RUNS, TRAINING_CURVES, EVALUATIONS, OUTCOMES, COMPETENCE, VERDICTS, RUN_LEVELS,
                            TRAJECTORIES, COMPUTE_SCALING, IRL_WEIGHTS, BEHAVIORAL_OBJECTIVES, CANDIDATE_LIKELIHOODS,
                            OPTIMIZATION_POWER, LEVEL_BITS, EPIC_DISTANCES, PROBE_PURSUIT, PROBE_READINGS, PROBE_VERDICTS,
                            SPLIT_OVERLAPS, EVENT_RATES))

# -- mesa-objective probes of a run's seeds (``mesalab probe RUN_DIR``; probes.duckdb in the run folder) -----------
PROBE_SEEDS = _t("probe_seeds", "seed INTEGER, split VARCHAR, n_levels INTEGER, steps INTEGER, layers JSON, "
                 "dataset VARCHAR, created VARCHAR", ("seed",))
ACTIVATION_PROBES = _t("activation_probes", "seed INTEGER, layer VARCHAR, label VARCHAR, kind VARCHAR, metric VARCHAR, "
                       "value DOUBLE, ci_low DOUBLE, ci_high DOUBLE, control DOUBLE, selectivity DOUBLE, sel_low DOUBLE, "
                       "sel_high DOUBLE, random_init DOUBLE, random_selectivity DOUBLE, chance DOUBLE, n_fit INTEGER, "
                       "n_test INTEGER", ("seed", "layer", "label"))
STEERING_EFFECTS = _t("steering_effects", "seed INTEGER, layer VARCHAR, vector_of VARCHAR, split VARCHAR, "
                      "objective VARCHAR, coef DOUBLE, rate_before DOUBLE, rate_after DOUBLE, change DOUBLE, "
                      "ci_low DOUBLE, ci_high DOUBLE, n_levels INTEGER",
                      ("seed", "layer", "vector_of", "split", "objective"))
RETARGETING = _t("retargeting", "seed INTEGER, layer VARCHAR, probe VARCHAR, split VARCHAR, direction VARCHAR, "
                 "strength DOUBLE, norm DOUBLE, reached INTEGER, n_levels INTEGER, rate DOUBLE, ci_low DOUBLE, "
                 "ci_high DOUBLE", ("seed", "layer", "split", "direction", "strength"))
PROBE_SCHEMA = Schema("probe", (PROBE_SEEDS, ACTIVATION_PROBES, STEERING_EFFECTS, RETARGETING))

# -- a sweep of cells (every kind of cell: PPO, ICL, ...) --------------------------------------------------------
CELLS = _t("cells", "cell_id VARCHAR, batch_id VARCHAR, panel VARCHAR, dial VARCHAR, value DOUBLE, seed INTEGER, "
           "config JSON, versions JSON, wall_s DOUBLE, finished VARCHAR", ("cell_id",))
CELL_METRICS = _t("cell_metrics", "cell_id VARCHAR, metric VARCHAR, value DOUBLE", ("cell_id", "metric"))
CELL_CURVES = _t("cell_curves", "cell_id VARCHAR, update_index INTEGER, env_steps BIGINT, success_rate DOUBLE")
CELL_TRAJECTORIES = _t("cell_trajectories", "cell_id VARCHAR, split VARCHAR, level INTEGER, rows INTEGER[], "
                       "cols INTEGER[], outcome VARCHAR")
SWEEP_LEVELS = _t("levels", "task VARCHAR, split VARCHAR, level INTEGER, height INTEGER, width INTEGER, "
                  "channels INTEGER, grid BOOLEAN[], start_row INTEGER, start_col INTEGER", ("task", "split", "level"))
CELL_MATCHES = _t("cell_matches", "cell_id VARCHAR, layer INTEGER, reference VARCHAR, reference_loss DOUBLE, "
                  "model_loss DOUBLE, prediction_mse DOUBLE, sensitivity_cosine DOUBLE")
SWEEP_SCHEMA = Schema("sweep", (CELLS, CELL_METRICS, CELL_CURVES, CELL_TRAJECTORIES, SWEEP_LEVELS))
# a sweep of ICL cells also keeps every cell's algorithm-match table
ICL_SWEEP_SCHEMA = Schema("sweep", (*SWEEP_SCHEMA.tables, CELL_MATCHES))

# -- maze-path size extrapolation (cells of the sweep schema, plus accuracy per size and tick) ------------------
THINKING_ACCURACY = _t("thinking_accuracy", "cell_id VARCHAR, size INTEGER, ticks INTEGER, accuracy DOUBLE, "
                       "n_mazes INTEGER", ("cell_id", "size", "ticks"))
THINKING_SUMMARY = _t("thinking_summary", "cell_id VARCHAR, size INTEGER, n_mazes INTEGER, "
                      "accuracy_at_trained_ticks DOUBLE, ci_low_trained DOUBLE, ci_high_trained DOUBLE, "
                      "best_ticks INTEGER, accuracy_at_best_ticks DOUBLE, ci_low_best DOUBLE, ci_high_best DOUBLE, "
                      "gain DOUBLE, gain_ci_low DOUBLE, gain_ci_high DOUBLE", ("cell_id", "size"))
EXTRAPOLATION_SCHEMA = Schema("extrapolation", (CELLS, CELL_CURVES, THINKING_ACCURACY, THINKING_SUMMARY))

# -- maze-path internals of an extrapolation sweep's networks (``mesalab probe SWEEP_DIR``; probes.duckdb there) ----
MAZE_PROBE_SEEDS = _t("maze_probe_seeds", "seed INTEGER, sizes JSON, n_mazes INTEGER, ticks JSON, dataset VARCHAR, "
                      "created VARCHAR", ("seed",))
MAZE_PROBES = _t("maze_probes", "seed INTEGER, size INTEGER, tick INTEGER, source VARCHAR, label VARCHAR, "
                 "metric VARCHAR, value DOUBLE, ci_low DOUBLE, ci_high DOUBLE, control DOUBLE, selectivity DOUBLE, "
                 "sel_low DOUBLE, sel_high DOUBLE, chance DOUBLE, n_fit INTEGER, n_test INTEGER",
                 ("seed", "size", "tick", "source", "label"))
MAZE_TIMING = _t("maze_timing", "seed INTEGER, size INTEGER, source VARCHAR, algorithm VARCHAR, rho DOUBLE, "
                 "ci_low DOUBLE, ci_high DOUBLE, margin DOUBLE, margin_low DOUBLE, margin_high DOUBLE, slope DOUBLE, "
                 "n_mazes INTEGER, n_cells INTEGER, settled DOUBLE, path_on DOUBLE, solved DOUBLE, ticks INTEGER",
                 ("seed", "size", "source", "algorithm"))
MAZE_TIMING_CURVE = _t("maze_timing_curve", "seed INTEGER, size INTEGER, algorithm VARCHAR, predicted INTEGER, "
                       "mean_tick DOUBLE, n_cells INTEGER", ("seed", "size", "algorithm", "predicted"))
MAZE_PROBE_SCHEMA = Schema("maze-probe", (MAZE_PROBE_SEEDS, MAZE_PROBES, MAZE_TIMING, MAZE_TIMING_CURVE))

# -- an icl-gd run ------------------------------------------------------------------------------------------------
ICL_RUNS = _t("runs", "seed INTEGER, task VARCHAR, config JSON, versions JSON, created VARCHAR")
ICL_TRAINING = _t("icl_training", "seed INTEGER, step INTEGER, loss DOUBLE")
ICL_MATCHES = _t("icl_matches", "seed INTEGER, layer INTEGER, reference VARCHAR, reference_loss DOUBLE, "
                 "model_loss DOUBLE, prediction_mse DOUBLE, sensitivity_cosine DOUBLE")
ICL_OOD = _t("icl_ood", "seed INTEGER, shift VARCHAR, scale DOUBLE, model DOUBLE, gd_one_step DOUBLE, "
             "least_squares DOUBLE")
ICL_LEARNING_RATES = _t("icl_learning_rates", "seed INTEGER, gd_steps INTEGER, lr DOUBLE")
ICL_SCHEMA = Schema("icl", (ICL_RUNS, ICL_TRAINING, ICL_MATCHES, ICL_OOD, ICL_LEARNING_RATES))

# -- inside an icl-gd run's transformers (``mesalab probe RUN_DIR`` on an icl-gd folder; probes.duckdb there) ------
ICL_PROBE_SEEDS = _t("icl_probe_seeds", "seed INTEGER, sequences INTEGER, layers JSON, learning_rates JSON, "
                     "dataset VARCHAR, created VARCHAR", ("seed",))
ICL_TOKEN_PROBES = _t("icl_token_probes", "seed INTEGER, layer VARCHAR, source VARCHAR, tokens VARCHAR, label VARCHAR, "
                      "r2 DOUBLE, ci_low DOUBLE, ci_high DOUBLE, control DOUBLE, selectivity DOUBLE, sel_low DOUBLE, "
                      "sel_high DOUBLE, gain DOUBLE, gain_low DOUBLE, gain_high DOUBLE, margin DOUBLE, "
                      "margin_low DOUBLE, margin_high DOUBLE, n_fit INTEGER, n_test INTEGER",
                      ("seed", "layer", "source", "tokens", "label"))
ICL_PROBE_SCHEMA = Schema("icl-probe", (ICL_PROBE_SEEDS, ICL_TOKEN_PROBES))

# -- the analytic toy model ---------------------------------------------------------------------------------------
TOY_MODEL = _t("toy_model", "curve VARCHAR, n DOUBLE, a DOUBLE, p DOUBLE, ceiling_bits DOUBLE, mesa_share DOUBLE, "
               "base_instance_share DOUBLE, base_amortised_share DOUBLE")
TOY_MEASURED = _t("toy_measured", "n DOUBLE, mean DOUBLE, ci_low DOUBLE, ci_high DOUBLE, n_seeds INTEGER")
TOY_FIT = _t("toy_fit", "a DOUBLE, p DOUBLE, rmse DOUBLE, n_points INTEGER, ceiling_bits DOUBLE, source VARCHAR")
TOY_SCHEMA = Schema("toy-model", (TOY_MODEL, TOY_MEASURED, TOY_FIT))
