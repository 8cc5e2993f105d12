"""The API reference (docs/build_api.py, pdoc) builds from the docstrings of the public modules, with no pdoc
warning, no import failure and no cross-reference that names nothing. Each build runs in a subprocess, so the
imports of documentation stay out of the test process."""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "docs" / "build_api.py"

# page -> names that must be documented on it (pdoc gives each documented member an element id)
KEY_NAMES = {
    "mesalab.tasks": ("Task", "get_task", "register_task", "list_tasks"),
    "mesalab.diagnostics": ("evaluate", "Verdict", "summarise"),
    "mesalab.diagnostics.external": ("external_policy", "task_policy"),
    "mesalab.optimizers": ("PPOConfig", "make_train"),
    "mesalab.models": ("make_model",),
    "mesalab.studies": ("launch", "Study", "register"),
    "mesalab.experiments.presets": ("Preset", "PRESETS"),
    "mesalab.eval_plan": ("EvalPlan",),
    "mesalab.results.folder": ("RunFolder",),
}


def build(out: Path, *args: str, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(pythonpath), env.get("PYTHONPATH", "")) if p)
    return subprocess.run([sys.executable, str(SCRIPT), str(out), *args], capture_output=True, text=True, env=env,
                          timeout=300)


def page(out: Path, module: str) -> Path:
    return out / (module.replace(".", "/") + ".html")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("api-html")
    result = build(out)
    assert result.returncode == 0, f"the API reference build failed:\n{result.stderr}"
    return out


def test_every_public_module_has_a_page(reference):
    expected = set(KEY_NAMES)
    tasks = ROOT / "src" / "mesalab" / "tasks"
    for path in tasks.rglob("*.py"):  # mesalab.tasks: every submodule too
        parts = path.relative_to(tasks.parent.parent).with_suffix("").parts
        expected.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    if importlib.util.find_spec("mesalab.plugins") is not None:
        expected.add("mesalab.plugins")
    assert "mesalab.tasks.keys_chests.env" in expected
    missing = sorted(m for m in expected if not page(reference, m).is_file())
    assert not missing, f"no API page for {missing}"
    assert (reference / "index.html").is_file()


def test_key_public_names_are_documented(reference):
    for module, names in KEY_NAMES.items():
        html = page(reference, module).read_text(encoding="utf-8")
        absent = [n for n in names if f'id="{n}"' not in html]
        assert not absent, f"{module}: {absent} not documented"


def sample_package(root: Path) -> Path:
    """A package with a good module, a broken reference and a broken import; returns the folder to put on the path."""
    package = root / "src" / "apiref_sample"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('"""A sample package; see :class:`~apiref_sample.good.Thing`."""\n\n'
                                         'from apiref_sample.good import Thing\n\n__all__ = ["Thing"]\n')
    (package / "good.py").write_text('"""See :func:`helper` and :class:`~apiref_sample.good.Thing`."""\n\n'
                                     'def helper():\n    """A helper."""\n\n\nclass Thing:\n    """A thing."""\n')
    (package / "badref.py").write_text('"""See :func:`no_such_function`."""\n')
    (package / "badimport.py").write_text('"""Imports what is not there."""\n\nimport apiref_no_such_module\n')
    return root / "src"


def docstrings(html: str) -> str:
    return "".join(re.findall(r'<div class="docstring">(.*?)</div>', html, flags=re.S))


def test_cross_references_become_links(reference, tmp_path):
    # mesalab.studies's docstrings name the Study class (some as ~mesalab.studies.contract.Study): links, no "~"
    text = docstrings(page(reference, "mesalab.studies").read_text(encoding="utf-8"))
    assert '<a href="#Study">' in text
    assert "~mesalab" not in text and ":class:" not in text
    # a reference to an object that the reference documents under another name points at that page
    result = build(tmp_path / "out", "--modules", "apiref_sample", pythonpath=sample_package(tmp_path))
    assert result.returncode == 0, result.stderr
    text = docstrings(page(tmp_path / "out", "apiref_sample").read_text(encoding="utf-8"))
    assert '<a href="#Thing">apiref_sample.Thing</a>' in text


def test_a_broken_reference_or_import_fails_the_build(tmp_path):
    src = sample_package(tmp_path)
    modules = ["apiref_sample.good", "apiref_sample.badref", "apiref_sample.badimport"]

    result = build(tmp_path / "out", "--modules", *modules, pythonpath=src)

    assert result.returncode != 0
    assert "apiref_sample.badref: :func:`no_such_function` names nothing" in result.stderr
    assert "cannot import apiref_sample.badimport" in result.stderr
    assert not [line for line in result.stderr.splitlines() if line.startswith("error: apiref_sample.good")]
    ok = build(tmp_path / "out-good", "--modules", "apiref_sample.good", pythonpath=src)
    assert ok.returncode == 0, ok.stderr
