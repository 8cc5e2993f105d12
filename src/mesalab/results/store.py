"""The results database of a run folder (DuckDB).

A run's results are written in one transaction into ``results.duckdb.partial`` which is then renamed to
``results.duckdb``: an interrupted run leaves either no database or a complete one, never a half-written one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import duckdb

from mesalab.errors import CorruptRunError

DB_NAME = "results.duckdb"

SCHEMA = """
CREATE TABLE runs (seed INTEGER PRIMARY KEY, task VARCHAR, config JSON, versions JSON, created VARCHAR);
CREATE TABLE training_curves (seed INTEGER, update_index INTEGER, env_steps BIGINT, metric VARCHAR, value DOUBLE);
CREATE TABLE evaluations (seed INTEGER, split VARCHAR, objective VARCHAR, is_base BOOLEAN, n_episodes INTEGER,
    competent_rate DOUBLE, ci_low DOUBLE, ci_high DOUBLE, reach_rate DOUBLE, mean_return DOUBLE,
    mean_optimal DOUBLE, normalised_return DOUBLE);
CREATE TABLE outcomes (seed INTEGER, split VARCHAR, outcome VARCHAR, count INTEGER);
CREATE TABLE competence (seed INTEGER, split VARCHAR, rate DOUBLE, ci_low DOUBLE, ci_high DOUBLE);
CREATE TABLE verdicts (seed INTEGER PRIMARY KEY, label VARCHAR, proxy VARCHAR, confidence DOUBLE,
    class_probabilities JSON, n_episodes INTEGER, text VARCHAR);
CREATE TABLE levels (split VARCHAR, level INTEGER, height INTEGER, width INTEGER, channels INTEGER,
    grid BOOLEAN[], start_row INTEGER, start_col INTEGER);
CREATE TABLE trajectories (seed INTEGER, split VARCHAR, level INTEGER, rows INTEGER[], cols INTEGER[], outcome VARCHAR);
CREATE TABLE compute_scaling (seed INTEGER, ticks INTEGER, trained_ticks INTEGER, successes INTEGER,
    n_episodes INTEGER, success_rate DOUBLE, ci_low DOUBLE, ci_high DOUBLE);
""" + """
CREATE TABLE irl_weights (seed INTEGER, split VARCHAR, feature VARCHAR, position INTEGER, weight DOUBLE,
    normalised DOUBLE, ci_low DOUBLE, ci_high DOUBLE);
CREATE TABLE behavioral_objectives (seed INTEGER, split VARCHAR, dominant VARCHAR, dominant_weight DOUBLE,
    scale DOUBLE, fitted_ll DOUBLE, uniform_ll DOUBLE, ceiling_ll DOUBLE, goal_directedness DOUBLE,
    goal_directedness_nats DOUBLE, aliases JSON, absent JSON, n_levels INTEGER, n_actions INTEGER, reading VARCHAR);
CREATE TABLE candidate_likelihoods (seed INTEGER, split VARCHAR, candidate VARCHAR, beta DOUBLE, held_out_ll DOUBLE);
CREATE TABLE optimization_power (seed INTEGER, split VARCHAR, objective VARCHAR, n_levels INTEGER, mean_bits DOUBLE,
    ci_low DOUBLE, ci_high DOUBLE, optimal_mean_bits DOUBLE, fraction_of_ceiling DOUBLE, histogram_edges DOUBLE[],
    histogram_counts INTEGER[]);
CREATE TABLE level_bits (seed INTEGER, split VARCHAR, objective VARCHAR, level INTEGER, bits DOUBLE,
    optimal_bits DOUBLE);
"""
# written by `mesalab run` and rewritten by `mesalab diagnose`
OBJECTIVE_TABLES = ("irl_weights", "behavioral_objectives", "candidate_likelihoods", "optimization_power",
                    "level_bits")


def _atomic_update(run_dir: Path, start_from_existing: bool, change, db_name: str = DB_NAME) -> Path:
    """Apply ``change(con)`` in one transaction to ``results.duckdb.partial`` (a copy of the run's database
    when ``start_from_existing``, else empty), then rename it over ``results.duckdb``: an interruption leaves
    the previous state (no database, or the old one), never a half-written one."""
    import shutil

    final = Path(run_dir) / db_name
    tmp = final.with_suffix(".duckdb.partial")
    for p in (tmp, Path(str(tmp) + ".wal")):
        if p.exists():
            p.unlink()
    if start_from_existing:
        shutil.copyfile(final, tmp)
    con = duckdb.connect(str(tmp))
    try:
        con.execute("BEGIN TRANSACTION")
        change(con)
        con.execute("COMMIT")
        con.execute("CHECKPOINT")
    finally:
        con.close()
    os.replace(tmp, final)
    return final


def insert_rows(con, table: str, values: list[tuple]) -> None:
    if values:
        marks = ", ".join("?" * len(values[0]))
        con.executemany(f"INSERT INTO {table} VALUES ({marks})", values)


def write_results(run_dir: Path, rows: dict[str, list[tuple]], schema: str = SCHEMA, db_name: str = DB_NAME) -> Path:
    """Create the run's database from ``schema`` and ``rows`` (table name -> list of row tuples) atomically."""

    def change(con):
        con.execute(schema)
        for table, values in rows.items():
            insert_rows(con, table, values)

    return _atomic_update(run_dir, False, change, db_name)


def replace_tables(run_dir: Path, rows: dict[str, list[tuple]]) -> Path:
    """Replace the contents of some tables of an existing run database, atomically (the database is copied,
    changed and renamed over the original). Tables missing from an older database are created."""
    open_results(run_dir).close()  # one-line error if missing or corrupt
    statements = {s.split("(")[0].split()[-1]: s for s in SCHEMA.split(";") if s.strip()}

    def change(con):
        for table, values in rows.items():
            con.execute(f"DROP TABLE IF EXISTS {table}")
            con.execute(statements[table])
            insert_rows(con, table, values)

    return _atomic_update(run_dir, True, change)


def has_table(con, table: str) -> bool:
    return bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]).fetchone()[0])


def open_results(run_dir: Path) -> duckdb.DuckDBPyConnection:
    """Open a run's database read-only, with a one-line error if it is missing or corrupt."""
    path = Path(run_dir) / DB_NAME
    if not path.exists():
        raise CorruptRunError(f"{path} not found: the run did not finish; rerun `mesalab run` for it")
    try:
        con = duckdb.connect(str(path), read_only=True)
        con.execute("SELECT count(*) FROM verdicts").fetchone()
        return con
    except duckdb.Error as e:
        raise CorruptRunError(
            f"{path} is not a readable mesalab results database ({type(e).__name__}); rerun `mesalab run`"
        ) from None


def query(con, sql: str, *params) -> list[dict]:
    cur = con.execute(sql, list(params))
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, row)) for row in cur.fetchall()]


def dumps(obj) -> str:
    return json.dumps(obj, sort_keys=True, default=str)
