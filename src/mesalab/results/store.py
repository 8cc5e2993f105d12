"""DuckDB databases of result folders: the only module that opens one (through :class:`~mesalab.results.folder.RunFolder`).

Two ways to write, both all-or-nothing: :func:`commit_rows` inserts one finished batch of cells in a single
transaction (an interrupted study keeps every finished batch and never a half-written one), and
:func:`write_results` / :func:`replace_tables` build a whole database (or a changed copy of it) in
``NAME.partial`` and rename it into place. Table columns come from :mod:`mesalab.results.tables`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import duckdb

from mesalab.errors import CorruptRunError
from mesalab.results.tables import RUN_SCHEMA, Schema

DB_NAME = "results.duckdb"

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


def write_results(run_dir: Path, rows: dict[str, list[tuple]], schema: Schema = RUN_SCHEMA,
                  db_name: str = DB_NAME) -> Path:
    """Create a database holding every table of ``schema`` and ``rows`` (table name -> list of rows) atomically."""

    def change(con):
        con.execute(schema.ddl(if_not_exists=False))
        for table, values in rows.items():
            insert_rows(con, table, [schema[table].check(v) for v in values])

    return _atomic_update(run_dir, False, change, db_name)


def replace_tables(run_dir: Path, rows: dict[str, list[tuple]]) -> Path:
    """Replace the contents of some tables of an existing run database, atomically (the database is copied,
    changed and renamed over the original). Tables missing from an older database are created."""
    open_results(run_dir).close()  # one-line error if missing or corrupt

    def change(con):
        for table, values in rows.items():
            con.execute(f"DROP TABLE IF EXISTS {table}")
            con.execute(RUN_SCHEMA[table].ddl(if_not_exists=False))
            insert_rows(con, table, [RUN_SCHEMA[table].check(v) for v in values])

    return _atomic_update(run_dir, True, change)


def has_table(con, table: str) -> bool:
    return bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]).fetchone()[0])


def commit_rows(con, rows: dict[str, list[tuple]], schema: Schema) -> None:
    """Insert rows into an open database in a single transaction (all or nothing); each row is checked against
    its table's columns in ``schema`` first."""
    checked = {table: [schema[table].check(v) for v in values] for table, values in rows.items()}
    con.execute("BEGIN TRANSACTION")
    try:
        for table, values in checked.items():
            insert_rows(con, table, values)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def open_database(path: Path, schema: Schema, read_only: bool, probe: str, missing: str, corrupt: str):
    """Open a DuckDB database (creating every table of ``schema`` when writable) and read ``probe`` from it, with
    one-line errors: ``missing`` when it does not exist (read-only), ``corrupt`` when it cannot be read."""
    path = Path(path)
    if read_only and not path.exists():
        raise CorruptRunError(f"{path} not found: {missing}")
    try:
        con = duckdb.connect(str(path), read_only=read_only)
        if not read_only:
            con.execute(schema.ddl())
        con.execute(f"SELECT count(*) FROM {probe}").fetchone()
        return con
    except duckdb.Error as e:
        raise CorruptRunError(f"{path} is not a readable {schema.name} database ({type(e).__name__}); {corrupt}") from None


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
