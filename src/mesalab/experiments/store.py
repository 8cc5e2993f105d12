"""The results database of a sweep folder (``sweep.duckdb``), written one batch at a time.

Each finished batch is committed in one transaction (its cells, metrics, learning curves and drawn
trajectories), so an interrupted sweep keeps every finished cell and never holds a half-written one; a
re-run reads ``cells`` and trains only what is missing. ``cell_id`` is the primary key: a cell cannot be
stored twice.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from mesalab.errors import CorruptRunError
from mesalab.results.store import insert_rows

SWEEP_DB = "sweep.duckdb"

SWEEP_SCHEMA = """
CREATE TABLE IF NOT EXISTS cells (cell_id VARCHAR PRIMARY KEY, batch_id VARCHAR, panel VARCHAR, dial VARCHAR,
    value DOUBLE, seed INTEGER, config JSON, versions JSON, wall_s DOUBLE, finished VARCHAR);
CREATE TABLE IF NOT EXISTS cell_metrics (cell_id VARCHAR, metric VARCHAR, value DOUBLE, PRIMARY KEY (cell_id, metric));
CREATE TABLE IF NOT EXISTS cell_curves (cell_id VARCHAR, update_index INTEGER, env_steps BIGINT, success_rate DOUBLE);
CREATE TABLE IF NOT EXISTS cell_trajectories (cell_id VARCHAR, split VARCHAR, level INTEGER, rows INTEGER[],
    cols INTEGER[], outcome VARCHAR);
CREATE TABLE IF NOT EXISTS levels (task VARCHAR, split VARCHAR, level INTEGER, height INTEGER, width INTEGER,
    channels INTEGER, grid BOOLEAN[], start_row INTEGER, start_col INTEGER, PRIMARY KEY (task, split, level));
"""


def open_sweep(sweep_dir: Path, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open (creating when writable) a sweep database, with a one-line error if it is corrupt."""
    path = Path(sweep_dir) / SWEEP_DB
    if read_only and not path.exists():
        raise CorruptRunError(f"{path} not found: no cell of this sweep has finished; run `mesalab sweep` first")
    try:
        con = duckdb.connect(str(path), read_only=read_only)
        if not read_only:
            con.execute(SWEEP_SCHEMA)
        con.execute("SELECT count(*) FROM cells").fetchone()
        return con
    except duckdb.Error as e:
        raise CorruptRunError(f"{path} is not a readable sweep database ({type(e).__name__}); move it aside and "
                              "re-run `mesalab sweep` (its cells will be retrained)") from None


def finished_cells(con) -> set[str]:
    return {r[0] for r in con.execute("SELECT cell_id FROM cells").fetchall()}


def commit_batch(con, rows: dict[str, list[tuple]]) -> None:
    """Insert one batch's rows in a single transaction (all or nothing)."""
    con.execute("BEGIN TRANSACTION")
    try:
        for table, values in rows.items():
            insert_rows(con, table, values)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
