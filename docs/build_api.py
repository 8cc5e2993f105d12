"""Build the API reference (HTML, with pdoc) from the docstrings of mesalab's public modules.

    python docs/build_api.py [OUT_DIR]        # default: docs/api-html

Exits non-zero, listing every problem, when a public module fails to import, when pdoc warns (a type annotation
it cannot resolve, a module it cannot find, ...) or when a Sphinx-style cross-reference in a docstring
(``:func:`name```, ``:class:`~mesalab.x.Y```, ...) names nothing that exists. ``tests/test_api_reference.py``
runs it, so a broken reference fails the test suite.

Docstrings are reStructuredText-flavoured (pdoc's ``restructuredtext`` docformat). A cross-reference to an object
that the reference documents under another name (``mesalab.studies.contract.Study`` is documented as
``mesalab.studies.Study``) is pointed at that page, so it becomes a link.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import pkgutil
import re
import sys
import traceback
import types
import warnings
from pathlib import Path

# The public API, one page per module. Packages named in WITH_SUBMODULES get a page for every submodule too.
PUBLIC_MODULES = (
    "mesalab.tasks",
    "mesalab.plugins",
    "mesalab.diagnostics",
    "mesalab.diagnostics.external",
    "mesalab.optimizers",
    "mesalab.models",
    "mesalab.studies",
    "mesalab.experiments.presets",
    "mesalab.eval_plan",
    "mesalab.results.folder",
)
WITH_SUBMODULES = ("mesalab.tasks",)
# Documented once they exist (importlib.util.find_spec finds them); a module that exists but fails to import fails.
OPTIONAL_MODULES = ("mesalab.plugins",)

DEFAULT_OUT = Path(__file__).resolve().parent / "api-html"

ROLE = re.compile(r"(?P<head>(?::py)?:(?P<role>mod|func|data|const|class|meth|attr|exc|obj):`)(?P<tilde>~?)"
                  r"(?P<target>[^`]+?)(?P<call>\(\))?`")
# pdoc cannot evaluate postponed annotations of a typing.NamedTuple's generated __new__ (its module is
# "namedtuple_<Name>", so the names of the defining module are out of reach): mitmproxy/pdoc#765. Only that
# warning is tolerated, and only for a NamedTuple's constructor.
NAMEDTUPLE_ANNOTATION = re.compile(r"Error parsing type annotation .* for (?P<owner>[\w.]+)\.__init__\. ")


def module_names(public: tuple[str, ...] = PUBLIC_MODULES) -> list[str]:
    """Every module to document, in order (packages in WITH_SUBMODULES followed by their submodules)."""
    names: list[str] = []
    for name in public:
        if name in OPTIONAL_MODULES and importlib.util.find_spec(name) is None:
            print(f"note: {name} does not exist yet; not documented", file=sys.stderr)
            continue
        names.append(name)
        if name in WITH_SUBMODULES:
            package = importlib.import_module(name)

            def fail(sub: str) -> None:
                raise ImportError(f"cannot import {sub}") from sys.exc_info()[1]

            names += sorted(m.name for m in pkgutil.walk_packages(package.__path__, name + ".", onerror=fail))
    return names


def _walk(doc):
    """A module's documented objects: the module, its members, their members (classes), depth first."""
    import pdoc.doc

    yield doc
    if isinstance(doc, pdoc.doc.Module):
        members = [m for m in doc.members.values() if not isinstance(m, pdoc.doc.Module)]
    elif isinstance(doc, pdoc.doc.Class):
        members = doc.own_members
    else:
        members = []
    for member in members:
        yield from _walk(member)


def _resolve_absolute(name: str):
    parts = name.split(".")
    if parts[0] not in sys.modules:  # a top-level package nothing documented imports: not what a reference means
        raise LookupError(name)
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for part in parts[i:]:
            if not hasattr(obj, part):
                raise LookupError(name)
            obj = getattr(obj, part)
        return obj
    raise LookupError(name)


def _resolve(name: str, scopes: list) -> object:
    """What ``name`` refers to: looked up in the enclosing classes, the defining module, the documenting module,
    then as a fully qualified name. Raises LookupError."""
    first, *rest = name.split(".")
    for scope in scopes:
        if hasattr(scope, first):
            obj = getattr(scope, first)
            try:
                for part in rest:
                    obj = getattr(obj, part)
            except AttributeError:
                continue
            return obj
    return _resolve_absolute(name)


def _scopes(doc, documenting: types.ModuleType) -> list:
    modname, qualname = doc.taken_from
    module = sys.modules.get(modname) or importlib.import_module(modname)
    classes, obj = [], module
    for part in qualname.split(".") if qualname else []:
        obj = getattr(obj, part, None)
        if isinstance(obj, type):
            classes.append(obj)
    return [*reversed(classes), module, documenting]


def _own_docstring(doc) -> bool:
    """Whether ``doc``'s docstring is written on the object itself (pdoc shows a method or class with none its base
    class's, whose references belong to the base's module: they are checked there, or not at all outside mesalab)."""
    import pdoc.doc

    if isinstance(doc, pdoc.doc.Class):
        return bool(doc.obj.__dict__.get("__doc__"))
    if isinstance(doc, pdoc.doc.Function):
        return bool(getattr(doc.obj, "__doc__", None))
    return True


def _linkable(obj) -> bool:
    return isinstance(obj, (type, types.FunctionType, types.ModuleType, property))


def check_references(modules: dict) -> list[str]:
    """Check every cross-reference in the documented docstrings; point the ones that resolve to an object
    documented elsewhere at its page. Returns the problems (a reference that names nothing)."""
    import pdoc.doc

    documented: dict[int, list[str]] = {}
    names: set[str] = set()
    for module in modules.values():
        for doc in _walk(module):
            names.add(doc.fullname)
            if _linkable(doc.obj):
                documented.setdefault(id(doc.obj), []).append(doc.fullname)

    problems: list[str] = []
    for module in modules.values():
        for doc in _walk(module):
            if not doc.docstring or ":`" not in doc.docstring or not _own_docstring(doc):
                continue
            scopes = _scopes(doc, module.obj)
            namespace = isinstance(doc, (pdoc.doc.Module, pdoc.doc.Class))
            parent = doc.fullname if namespace else doc.fullname.rpartition(".")[0]

            def point(m: re.Match) -> str:
                target = m["target"].strip()
                try:
                    obj = _resolve(target, scopes)
                except LookupError:
                    problems.append(f"{doc.fullname}: {m[0]} names nothing (looked in "
                                    f"{', '.join(getattr(s, '__name__', '?') for s in scopes)})")
                    return m[0]
                if target in names or f"{parent}.{target}" in names or f"{module.fullname}.{target}" in names:
                    return m["head"] + target + (m["call"] or "") + "`"
                places = documented.get(id(obj), []) if _linkable(obj) else []
                if places:
                    here = [p for p in places if p.startswith(module.fullname + ".")]
                    target = (here or places)[0]
                return m["head"] + target + (m["call"] or "") + "`"

            # pdoc caches docstring (a cached_property): the rendered page reads the rewritten text
            doc.docstring = ROLE.sub(point, doc.docstring)
    return problems


def _known_pdoc_bug(message: str) -> bool:
    m = NAMEDTUPLE_ANNOTATION.match(message)
    if not m:
        return False
    try:
        owner = _resolve_absolute(m["owner"])
    except LookupError:
        return False
    return (isinstance(owner, type) and issubclass(owner, tuple) and hasattr(owner, "_fields")
            and owner.__new__.__module__.startswith("namedtuple_"))


def build(out: Path, public: tuple[str, ...] = PUBLIC_MODULES) -> list[str]:
    """Write the reference for ``public`` into ``out``; returns the problems (empty: a clean build)."""
    import pdoc
    import pdoc.doc
    import pdoc.render

    pdoc_dir = Path(pdoc.__file__).resolve().parent
    problems: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            modules = {}
            for name in module_names(public):
                try:
                    modules[name] = pdoc.doc.Module.from_name(name)
                except Exception:
                    problems.append(f"cannot import {name}:\n{traceback.format_exc()}")
            problems += check_references(modules)
            pdoc.render.configure(docformat="restructuredtext")
            out.mkdir(parents=True, exist_ok=True)
            for module in modules.values():
                page = out / f"{module.fullname.replace('.', '/')}.html"
                page.parent.mkdir(parents=True, exist_ok=True)
                page.write_text(pdoc.render.html_module(module, modules), encoding="utf-8")
            (out / "index.html").write_text(pdoc.render.html_index(modules) or "", encoding="utf-8")
            (out / "search.js").write_text(pdoc.render.search_index(modules) or "", encoding="utf-8")
        except Exception:
            problems.append("the build failed:\n" + traceback.format_exc())
    for w in caught:
        message = str(w.message)
        if not Path(w.filename).resolve().is_relative_to(pdoc_dir):
            print(f"note: {w.category.__name__} from {w.filename}:{w.lineno}: {message}", file=sys.stderr)
        elif not _known_pdoc_bug(message):
            problems.append(f"pdoc: {message}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=DEFAULT_OUT, help="output folder (default: docs/api-html)")
    parser.add_argument("--modules", nargs="+", metavar="MODULE", help="document these modules instead of the "
                        "public API (tests/test_api_reference.py checks that broken ones fail with it)")
    args = parser.parse_args(argv)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")  # documenting needs no accelerator
    problems = build(args.out, tuple(args.modules) if args.modules else PUBLIC_MODULES)
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        print(f"API reference: {len(problems)} problem(s); see above", file=sys.stderr)
        return 1
    print(f"API reference written to {args.out}/index.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())
