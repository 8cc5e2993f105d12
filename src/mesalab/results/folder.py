"""A results folder: what one study wrote, owned by one object.

::

    FOLDER/
        config.json | sweep.json   what was asked: kind, settings, seeds, versions (written first, atomically)
        results.duckdb | sweep.duckdb   the results, committed one finished batch of cells at a time
        checkpoints/NAME.eqx       trained models (written atomically)
        figures/*.png, report.html

:class:`RunFolder` is the only way code above the results layer reaches these files: it opens the database
(nothing above it calls DuckDB), commits rows, lists the finished cells (the resume rule), and reads and
writes the config and checkpoints. Which file names and which schema a folder uses is its kind's business
(:mod:`mesalab.studies`): a ``run`` keeps ``config.json`` and ``results.duckdb``, sweeps ``sweep.json`` and
``sweep.duckdb`` (the names earlier versions wrote, so old folders stay readable).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from mesalab.errors import ConfigError, CorruptRunError
from mesalab.results.files import save_leaves_atomic, write_json_atomic
from mesalab.results.store import commit_rows, open_database, query
from mesalab.results.tables import Schema

META_NAMES = ("config.json", "sweep.json")  # the config file of a run folder and of a sweep folder


def folder_meta(path: Path, names: tuple[str, ...] = META_NAMES) -> dict | None:
    """The config of whatever folder ``path`` is, read from the first of ``names`` it holds (``None`` when it holds
    none), one-line error if malformed."""
    for name in names:
        f = Path(path) / name
        if f.exists():
            try:
                meta = json.loads(f.read_text())
                if not isinstance(meta, dict):
                    raise TypeError("not an object")
                return meta
            except (json.JSONDecodeError, TypeError, UnicodeDecodeError) as e:
                raise CorruptRunError(f"{f} is malformed ({type(e).__name__}); re-run the command that wrote it "
                                      "with a new --out") from None
    return None


def checkpoint_name(cell_id: str) -> str:
    """A file name for a cell's checkpoint (characters a file system may refuse replaced by ``_``)."""
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", cell_id) + ".eqx"


class RunFolder:
    """One results folder of one kind. ``meta_name``/``db_name``: its config and database files; ``schema``: the
    tables its database holds; ``cell_table``/``cell_key``: the table with one row per finished cell and its key
    column (what the resume rule reads)."""

    def __init__(self, path: Path | str, schema: Schema, meta_name: str = "config.json",
                 db_name: str = "results.duckdb", cell_table: str = "cells", cell_key: str = "cell_id",
                 missing: str = "no cell of it has finished; run it first",
                 corrupt: str = "move it aside and re-run the command (its cells will be retrained)"):
        self.path = Path(path)
        self.schema = schema
        self.meta_name = meta_name
        self.db_name = db_name
        self.cell_table = cell_table
        self.cell_key = cell_key
        self.missing, self.corrupt = missing, corrupt

    # -- the config -------------------------------------------------------------------------------------------
    @property
    def meta_path(self) -> Path:
        return self.path / self.meta_name

    @property
    def db_path(self) -> Path:
        return self.path / self.db_name

    def has_meta(self) -> bool:
        return self.meta_path.exists()

    def read_meta(self) -> dict:
        if not self.meta_path.exists():
            raise CorruptRunError(f"{self.path} is not a mesalab results folder (no {self.meta_name}); pass the folder "
                                  "`mesalab run` or `mesalab sweep` wrote")
        return folder_meta(self.path, (self.meta_name,))

    def write_meta(self, meta: dict) -> None:
        write_json_atomic(self.meta_path, meta)

    def create(self) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"--out {self.path} cannot be created ({e.strerror or e}); pass a folder you can write "
                              "to") from None

    # -- the database ------------------------------------------------------------------------------------------
    def has_results(self) -> bool:
        return self.db_path.exists()

    def connect(self, read_only: bool = True):
        """An open connection (the caller closes it): read-only, or writable with every table created."""
        return open_database(self.db_path, self.schema, read_only, self.cell_table, self.missing, self.corrupt)

    def commit(self, rows: dict[str, list[tuple]]) -> None:
        """Insert one finished batch's rows in one transaction (all or nothing)."""
        con = self.connect(read_only=False)
        try:
            commit_rows(con, rows, self.schema)
        finally:
            con.close()

    def finished(self) -> set:
        """The keys of the cells already stored (empty when no database exists yet)."""
        if not self.has_results():
            return set()
        con = self.connect(read_only=True)
        try:
            return {r[0] for r in con.execute(f"SELECT {self.cell_key} FROM {self.cell_table}").fetchall()}
        finally:
            con.close()

    def tables(self, *names: str, order: dict[str, str] | None = None) -> dict[str, list[dict]]:
        """``name -> rows (dicts)`` of the named tables (a table the database lacks reads as ``[]``)."""
        order = order or {}
        con = self.connect(read_only=True)
        try:
            present = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
            out = {}
            for name in names:
                if name not in present:
                    out[name] = []
                    continue
                by = f" ORDER BY {order[name]}" if name in order else ""
                out[name] = query(con, f"SELECT * FROM {name}{by}")
            return out
        finally:
            con.close()

    def table_names(self) -> set[str]:
        return {r[0] for r in self.sql("SELECT table_name FROM information_schema.tables")}

    def rows_without(self, table: str, column: str, values: list) -> list[tuple]:
        """The rows of ``table`` whose ``column`` is none of ``values`` (e.g. the seeds not being replaced)."""
        marks = ", ".join("?" * len(values))
        return [tuple(r) for r in self.sql(f"SELECT * FROM {table} WHERE {column} NOT IN ({marks})", *values)]

    def sql(self, statement: str, *params) -> list[tuple]:
        """Rows of one read-only query (for analyses that aggregate in SQL)."""
        con = self.connect(read_only=True)
        try:
            return con.execute(statement, list(params)).fetchall()
        finally:
            con.close()

    # -- checkpoints ---------------------------------------------------------------------------------------------
    def checkpoint_path(self, name: str) -> Path:
        return self.path / "checkpoints" / name

    def save_checkpoint(self, name: str, model) -> Path:
        (self.path / "checkpoints").mkdir(exist_ok=True)
        path = self.checkpoint_path(name)
        save_leaves_atomic(path, model)
        return path

    def load_checkpoint(self, name: str, skeleton, what: str):
        """The model stored under ``name``, deserialised into ``skeleton`` (one-line error if missing or corrupt)."""
        import equinox as eqx

        path = self.checkpoint_path(name)
        if not path.exists():
            raise CorruptRunError(f"no checkpoint for {what} in {self.path} ({path.name} is missing)")
        try:
            return eqx.tree_deserialise_leaves(str(path), skeleton)
        except Exception as e:
            raise CorruptRunError(f"checkpoint {path} is corrupt ({type(e).__name__}); retrain it with the command "
                                  "that wrote this folder") from None
