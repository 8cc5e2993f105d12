"""The run database's atomic writes under faults: a write or table replacement that fails midway (an error or
Ctrl-C inside the transaction) leaves the previous database byte-for-byte intact, or no database at all."""

import duckdb
import pytest

from mesalab.results import store

VERDICT = (0, "robustly aligned", None, 0.9, "{}", 100, "robustly aligned (confidence 0.90)")
IRL = [(0, "test", "door", 0, 0.5, 0.5, 0.4, 0.6), (0, "test", "red", 1, -0.5, -0.5, -0.6, -0.4)]
BITS = [(0, "test", "base:door", i, 1.0 + i, 4.0) for i in range(5)]


def _contents(run_dir):
    con = duckdb.connect(str(run_dir / store.DB_NAME), read_only=True)
    try:
        return {t: sorted(con.execute(f"SELECT * FROM {t}").fetchall())
                for t in ("verdicts", "irl_weights", "level_bits")}
    finally:
        con.close()


@pytest.fixture
def run_dir(tmp_path):
    store.write_results(tmp_path, {"verdicts": [VERDICT], "irl_weights": IRL, "level_bits": BITS})
    return tmp_path


def _fail_on_table(monkeypatch, table, exc):
    """insert_rows works for every table until ``table``, then raises ``exc`` (inside the transaction)."""
    real = store.insert_rows
    done = []

    def insert(con, t, values):
        if t == table:
            raise exc
        real(con, t, values)
        done.append(t)

    monkeypatch.setattr(store, "insert_rows", insert)
    return done


@pytest.mark.parametrize("exc", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_failed_replace_tables_leaves_the_old_database_byte_for_byte(run_dir, monkeypatch, exc):
    db = run_dir / store.DB_NAME
    before_bytes, before = db.read_bytes(), _contents(run_dir)
    new_irl = [(0, "test", "door", 0, 9.0, 1.0, 0.9, 1.1)]
    done = _fail_on_table(monkeypatch, "level_bits", exc)
    with pytest.raises(type(exc)):
        store.replace_tables(run_dir, {"irl_weights": new_irl, "level_bits": BITS[:1]})
    assert done == ["irl_weights"]  # it failed midway: one table already replaced inside the transaction
    assert db.read_bytes() == before_bytes
    assert _contents(run_dir) == before
    # the next replacement goes through (and would have been visible)
    monkeypatch.undo()
    store.replace_tables(run_dir, {"irl_weights": new_irl})
    after = _contents(run_dir)
    assert after["irl_weights"] == new_irl and after["level_bits"] == before["level_bits"]


def test_failed_first_write_leaves_no_database_and_a_failed_rewrite_keeps_the_old(tmp_path, monkeypatch):
    done = _fail_on_table(monkeypatch, "level_bits", RuntimeError("boom"))
    with pytest.raises(RuntimeError, match="boom"):
        store.write_results(tmp_path, {"verdicts": [VERDICT], "irl_weights": IRL, "level_bits": BITS})
    assert done == ["verdicts", "irl_weights"]
    assert not (tmp_path / store.DB_NAME).exists()
    monkeypatch.undo()
    store.write_results(tmp_path, {"verdicts": [VERDICT], "irl_weights": IRL, "level_bits": BITS})
    before_bytes = (tmp_path / store.DB_NAME).read_bytes()
    _fail_on_table(monkeypatch, "level_bits", RuntimeError("boom"))
    with pytest.raises(RuntimeError, match="boom"):
        store.write_results(tmp_path, {"verdicts": [VERDICT], "irl_weights": IRL[:1], "level_bits": BITS})
    assert (tmp_path / store.DB_NAME).read_bytes() == before_bytes


def test_a_real_database_error_midway_leaves_the_old_database(run_dir):
    """A real database error midway (the second table's row holds text where an INTEGER goes), no monkeypatching."""
    before_bytes = (run_dir / store.DB_NAME).read_bytes()
    with pytest.raises(duckdb.Error):
        store.replace_tables(run_dir, {"irl_weights": IRL[:1], "level_bits": [(0, "test", "base:door", "x", 1.0, 4.0)]})
    assert (run_dir / store.DB_NAME).read_bytes() == before_bytes


def test_wrong_arity_rows_are_refused_by_their_table_and_change_nothing(run_dir):
    before_bytes = (run_dir / store.DB_NAME).read_bytes()
    with pytest.raises(ValueError, match="a row of level_bits has 2 values for its 6 columns"):
        store.replace_tables(run_dir, {"irl_weights": IRL[:1], "level_bits": [(0, "x")]})
    assert (run_dir / store.DB_NAME).read_bytes() == before_bytes
