"""PPO in jitted chunks (progress reports without a host callback) and the persistent compilation cache."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mesalab.optimizers import PPOConfig, make_train
from mesalab.optimizers.ppo import chunk_sizes, jitted_stages, make_train_stages, train_in_chunks

SMALL = dict(total_steps=16 * 32 * 7, num_envs=16, rollout_len=32, width=32, depth=1, pool_size=64)  # 7 updates


@pytest.mark.parametrize("n, chunks, expected", [
    (73, 10, [8] * 9 + [1]), (70, 10, [7] * 10), (7, 3, [3, 3, 1]), (1, 10, [1]), (5, 10, [1] * 5), (12, 1, [12]),
])
def test_chunk_sizes_cover_every_update_with_at_most_two_shapes(n, chunks, expected):
    sizes = chunk_sizes(n, chunks)
    assert sizes == expected and sum(sizes) == n and len(set(sizes)) <= 2


def test_chunks_give_the_one_program_numbers_and_report_progress():
    """Chunks of 3, 3 and 1 updates reproduce ``jax.vmap(train)`` (two seeds, a data dial as a vmap axis) and
    report the updates done after each chunk."""
    cfg = PPOConfig(**SMALL)
    keys = jax.vmap(jax.random.key)(jnp.arange(2, dtype=jnp.uint32))
    dials = {"train_alpha": jnp.asarray([0.0, 0.3], jnp.float32)}
    ref_models, ref = jax.jit(jax.vmap(make_train(cfg)))(keys, dials)
    seen = []
    models, metrics = train_in_chunks(make_train_stages(cfg), keys, dials, seen.append, chunks=3)
    assert seen == [3, 6, 7]
    assert set(metrics) == set(ref)
    for k in ref:
        assert metrics[k].shape == ref[k].shape == (2, cfg.num_updates)
        np.testing.assert_allclose(np.asarray(metrics[k]), np.asarray(ref[k]), rtol=2e-5, atol=1e-6, err_msg=k)
    np.testing.assert_array_equal(np.asarray(metrics["env_steps"][0]), np.arange(1, 8) * 16 * 32)
    for x, y in zip(jax.tree_util.tree_leaves(models), jax.tree_util.tree_leaves(ref_models)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=2e-5, atol=1e-6)


def test_a_chunk_program_has_no_host_callback():
    """A host callback in a program keeps JAX's persistent cache from storing it: the chunk has none."""
    cfg = PPOConfig(**SMALL)
    stages = make_train_stages(cfg)
    keys = jax.vmap(jax.random.key)(jnp.arange(1, dtype=jnp.uint32))
    init, run, _ = jitted_stages(stages)
    carry = init(keys, {})
    text = run.lower(carry, {}, 0, 2).as_text()
    assert "callback" not in text.lower()


CACHE_PROBE = """
import json, sys
import jax
hits = []
jax.monitoring.register_event_listener(lambda name, **kw: hits.append(name) if 'cache_hits' in name else None)
from mesalab.compile_cache import enable
folder = enable()
import jax.numpy as jnp
from mesalab.optimizers import PPOConfig
from mesalab.optimizers.ppo import make_train_stages, train_in_chunks
cfg = PPOConfig(**json.loads(sys.argv[1]))
keys = jax.vmap(jax.random.key)(jnp.arange(1, dtype=jnp.uint32))
_, m = train_in_chunks(make_train_stages(cfg), keys, {}, lambda n: None, chunks=3)
print(json.dumps({"folder": str(folder), "hits": len(hits), "loss": float(m["loss"].sum())}))
"""


def test_a_second_process_loads_the_compiled_chunks_from_the_cache(tmp_path):
    env = {**os.environ, "MESALAB_COMPILE_CACHE": str(tmp_path / "cache")}

    def probe():
        res = subprocess.run([sys.executable, "-c", CACHE_PROBE, json.dumps(SMALL)], capture_output=True, text=True,
                             env=env, timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]
        return json.loads(res.stdout.strip().splitlines()[-1])

    first = probe()
    assert first["folder"] == str(tmp_path / "cache") and first["hits"] == 0
    assert any((tmp_path / "cache").iterdir())  # the programs were written
    second = probe()
    assert second["hits"] >= 2  # the chunk programs (3 and 1 updates) at least
    assert second["loss"] == first["loss"]  # and they give the same numbers


def test_the_cache_can_be_turned_off(monkeypatch):
    from mesalab import compile_cache

    monkeypatch.setenv("MESALAB_COMPILE_CACHE", "off")
    assert compile_cache.cache_dir() is None and compile_cache.enable() is None
    monkeypatch.setenv("MESALAB_COMPILE_CACHE", "")
    monkeypatch.setenv("XDG_CACHE_HOME", "/somewhere")
    assert str(compile_cache.cache_dir()) == "/somewhere/mesalab/jax"


def test_the_cache_is_locked_against_torn_entries(monkeypatch, tmp_path):
    """A size limit turns on JAX's file lock around every cache read and write, so no process loads an entry that
    another one is still writing."""
    import jax

    from mesalab import compile_cache

    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
             "jax_persistent_cache_min_entry_size_bytes", "jax_compilation_cache_max_size")
    before = {n: getattr(jax.config, n) for n in names}
    for n in names:  # enable() exports these; monkeypatch puts them back afterwards
        monkeypatch.setenv(n.upper(), os.environ.get(n.upper(), ""))
    monkeypatch.setenv("MESALAB_COMPILE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(compile_cache, "_here", True)  # the suite's workers keep the cache out (conftest.py)
    try:
        assert compile_cache.enable() == tmp_path / "cache"
        assert 0 < compile_cache.MAX_BYTES == jax.config.jax_compilation_cache_max_size
        assert os.environ["JAX_COMPILATION_CACHE_MAX_SIZE"] == str(compile_cache.MAX_BYTES)
    finally:
        from jax._src import compilation_cache as jax_cache

        for n, v in before.items():  # the suite's own settings: no cache in this worker
            jax.config.update(n, v)
        jax_cache.reset_cache()  # JAX keeps a cache it has opened even after its folder setting is cleared


def test_entries_without_an_access_time_are_repaired(tmp_path):
    """A folder holding entries written with no size limit (no ``-atime`` file) would make JAX's size-limited cache
    fail every later write (its eviction reads every entry's access time); enable() gives them one."""
    from mesalab.compile_cache import add_missing_access_times

    (tmp_path / "jit_old-abc-cache").write_bytes(b"x" * 10)
    (tmp_path / "jit_new-def-cache").write_bytes(b"y")
    (tmp_path / "jit_new-def-atime").write_bytes((5).to_bytes(8, "little"))
    assert add_missing_access_times(tmp_path) == 1
    assert int.from_bytes((tmp_path / "jit_old-abc-atime").read_bytes(), "little") > 0
    assert int.from_bytes((tmp_path / "jit_new-def-atime").read_bytes(), "little") == 5  # left as it was
    assert add_missing_access_times(tmp_path) == 0
