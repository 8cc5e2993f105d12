import os

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")

from mesalab import compile_cache as _compile_cache  # noqa: E402

# JAX's persistent compilation cache in the suite: each pytest worker gives the `mesalab` subprocesses its tests start
# a folder of its own, fresh for every run (they wait on them, so two never write at once), and compiles without the
# cache itself (compile_cache.only_in_subprocesses, which also covers the CLI run in-process): two CI workers died in
# compilation_cache -> deserialize_executable while processes shared one folder. A suite without any cache is much
# slower: every CLI test compiles from scratch. MESALAB_COMPILE_CACHE set outside (a folder, or off) wins.
_CACHE_ROOT = "MESALAB_TEST_CACHE_ROOT"  # set by the process that made this run's folder; its workers inherit it
_made_cache_root = False
if _CACHE_ROOT not in os.environ and "MESALAB_COMPILE_CACHE" not in os.environ:
    import tempfile  # noqa: E402

    os.environ[_CACHE_ROOT] = tempfile.mkdtemp(prefix="mesalab-test-jax-")
    _made_cache_root = True
if _CACHE_ROOT in os.environ:
    os.environ["MESALAB_COMPILE_CACHE"] = os.path.join(os.environ[_CACHE_ROOT],
                                                       os.environ.get("PYTEST_XDIST_WORKER", "main"))
_compile_cache.only_in_subprocesses()


_crashed: list[str] = []  # tests whose xdist worker died (the controller's list)


@pytest.hookimpl(optionalhook=True)
def pytest_handlecrashitem(crashitem, report, sched):
    """xdist: a worker died inside this test (a segfault: see below). Noted for one rerun at the end."""
    if crashitem not in _crashed:
        _crashed.append(crashitem)


def _rerun_crashed(session) -> None:
    """Re-run once, in a fresh process without xdist or the compile cache, every test whose worker died; when they
    all pass and were the only failures, the run passes. Assertion failures are never re-run. Why: in most CI runs
    one worker dies of a segfault inside XLA's CPU compiler (jax compiler.backend_compile_and_load: in a plain PPO
    program of test_ppo_runner, in an AlphaZero program of test_mcts, ...), whichever test compiles at that moment;
    the same tests pass on their own, and the cause is not found. A crash that repeats in the rerun still fails."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != _CACHE_ROOT}
    env["MESALAB_COMPILE_CACHE"] = "off"
    cmd = [sys.executable, "-m", "pytest", "-p", "no:xdist", "-p", "no:cacheprovider", "-o", "addopts=-ra", "-m", "",
           *_crashed]
    res = subprocess.run(cmd, env=env, cwd=str(session.config.rootpath), capture_output=True, text=True)
    tail = "\n".join(res.stdout.strip().splitlines()[-(3 if res.returncode == 0 else 60):])
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    verdict = "passed" if res.returncode == 0 else f"FAILED again (exit {res.returncode})"
    line = (f"re-ran {len(_crashed)} test(s) whose worker crashed, in a fresh process: {verdict}\n  "
            + "\n  ".join(_crashed) + "\n" + tail)
    if reporter is not None:
        reporter.write_sep("=", "crashed workers")
        reporter.write_line(line)
    else:
        print(line)
    dsession = session.config.pluginmanager.get_plugin("dsession")
    complete = (session.exitstatus == pytest.ExitCode.TESTS_FAILED and not session.shouldstop
                and not session.shouldfail and not getattr(dsession, "_summary_report", None))  # no tests left unrun
    if res.returncode == 0 and complete and session.testsfailed == len(_crashed):
        session.exitstatus = pytest.ExitCode.OK
        line = "the failures above are only these crashes, which passed on their rerun: exit status 0"
    else:
        line = "the run fails (other failures, tests left unrun, or the rerun failed)"
    if reporter is not None:
        reporter.write_line(line)
    else:
        print(line)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    """The controller re-runs tests whose worker crashed; the process that made this run's cache folder removes it
    (with xdist, the controller, after its workers)."""
    if _crashed and os.environ.get("PYTEST_XDIST_WORKER") is None:
        _rerun_crashed(session)
    if _made_cache_root:
        import shutil

        shutil.rmtree(os.environ[_CACHE_ROOT], ignore_errors=True)


@pytest.fixture(scope="session")
def red_door():
    from mesalab.tasks import get_task

    return get_task("red-door")


def chromium_required() -> bool:
    return os.environ.get("MESALAB_REQUIRE_CHROMIUM", "") not in ("", "0")


def chromium_browser() -> str:
    """Path of the headless browser that renders reports. Call it (or use the ``chromium`` fixture) at the very
    start of a test that needs it: it skips the test without Chromium, or fails it when MESALAB_REQUIRE_CHROMIUM
    is set, so no other check is ever dropped by a skip part-way through a test."""
    import shutil

    browser = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    if browser is None:
        if chromium_required():
            pytest.fail("chromium is required (MESALAB_REQUIRE_CHROMIUM is set) but not installed")
        pytest.skip("chromium not installed (apt-get install chromium; set MESALAB_REQUIRE_CHROMIUM=1 to require it)")
    return browser


@pytest.fixture(scope="session")
def chromium() -> str:
    """The browser path; session-scoped, so a test using it skips (or fails) before any other fixture is built."""
    return chromium_browser()


def figures_loaded_in_chromium(html_path, tmp_path, browser: str | None = None) -> tuple[int, int]:
    """Render a report in headless Chromium and return (figures loaded, figures in the page), as set by the
    report's data-figures-loaded marker. Pass ``browser`` from the ``chromium`` fixture; without it this looks
    the browser up itself and may skip part-way through the calling test (kept for older callers only)."""
    import re
    import subprocess

    browser = browser or chromium_browser()
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000", "--dump-dom", html_path.as_uri()]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    m = re.search(r'data-figures-loaded="(\d+)/(\d+)"', out.stdout)
    assert m, out.stdout[:500] + out.stderr[-1000:]
    return int(m.group(1)), int(m.group(2))


def embedded_figures(html: str) -> list[tuple[int, int]]:
    """(width, height) of every ``<img>`` of a report, decoded from its inline PNG (no browser needed); fails
    on an image that is not an inline, well-formed PNG."""
    import base64
    import re
    import struct
    import zlib

    sizes = []
    for src in re.findall(r'<img[^>]*\ssrc="([^"]*)"', html):
        assert src.startswith("data:image/png;base64,"), src[:80]
        data = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:8]
        length, kind = struct.unpack(">I4s", data[8:16])
        assert kind == b"IHDR" and length == 13
        width, height = struct.unpack(">II", data[16:24])
        assert zlib.crc32(data[12:29]) == struct.unpack(">I", data[29:33])[0]  # the header chunk is intact
        assert data.rstrip(b"\x00")[-8:-4] == b"IEND"
        sizes.append((width, height))
    return sizes
