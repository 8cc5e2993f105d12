import os

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(scope="session")
def red_door():
    from mesalab.tasks import get_task

    return get_task("red-door")


def figures_loaded_in_chromium(html_path, tmp_path) -> tuple[int, int]:
    """Render a report in headless Chromium and return (figures loaded, figures in the page), as set by the
    report's data-figures-loaded marker. Skips (or fails, with MESALAB_REQUIRE_CHROMIUM set) without Chromium."""
    import re
    import shutil
    import subprocess

    browser = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    if browser is None:
        if os.environ.get("MESALAB_REQUIRE_CHROMIUM"):
            pytest.fail("chromium is required (MESALAB_REQUIRE_CHROMIUM is set) but not installed")
        pytest.skip("chromium not installed (apt-get install chromium)")
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000", "--dump-dom", html_path.as_uri()]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    m = re.search(r'data-figures-loaded="(\d+)/(\d+)"', out.stdout)
    assert m, out.stdout[:500] + out.stderr[-1000:]
    return int(m.group(1)), int(m.group(2))
