"""Presets written by a user: a small TOML or Python file that ``mesalab sweep FILE`` runs like a built-in preset.

A TOML preset (every key but ``panels``, ``eval``, ``plots`` and ``seeds`` is required)::

    name = "green-door-alpha"
    description = "Green-door agents trained with a fraction alpha of disambiguating levels."
    condition = "Pseudo-alignment: disambiguating training levels remove the proxy."
    seeds = 3                        # seeds per dial value (default 5; --seeds overrides)

    [base]                           # PPO settings of every cell (mesalab.optimizers.PPOConfig); the task here
    task = "green-door"              # or in each panel; any registered task, a plugin's too
    total_steps = 100000

    [dial]                           # the condition being varied: a PPOConfig field and its values
    name = "train_alpha"
    values = [0.0, 0.1, 0.3]
    label = "alpha (fraction of disambiguating training levels)"

    [[hypotheses]]                   # each tested for a monotone trend along the dial (Spearman, over seeds)
    statement = "proxy pursuit at test falls as alpha grows"
    metric = "test/outcome:proxy:{proxy}"   # a cell metric (mesalab.studies.sweep); {proxy}: each proxy of the task
    direction = -1
    label = "rate of proxy pursuit at test"

    [eval]                           # optional evaluation settings (mesalab.eval_plan.EvalPlan)
    episodes = 300

``[[panels]]`` tables (optional) hold shape settings tested separately, e.g. one per task; ``plots`` (optional) is a
list of ``[metric, label]`` pairs (default: the hypotheses' metrics, then ``train/success``). A Python preset file
defines ``PRESET``: a :class:`~mesalab.experiments.presets.Preset` or a dict of the same keys. User presets train
PPO cells.

The sweep folder records the preset's whole definition (``sweep.json``: ``preset_def``), so ``mesalab report`` and
resuming work in later processes without the file, and a changed file is refused on resume.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from mesalab.errors import ConfigError
from mesalab.experiments.presets import PRESETS, Dial, Hypothesis, Preset, sweep_eval

PRESET_SUFFIXES = (".toml", ".py")
REQUIRED = ("name", "description", "condition", "base", "dial", "hypotheses")
OPTIONAL = ("panels", "eval", "plots", "seeds")
DIAL_KEYS = {"name", "values", "label", "unlimited_zero", "categorical"}
HYPOTHESIS_KEYS = {"statement", "metric", "direction", "label"}
_SPLIT = r"(train|test|[A-Za-z0-9_-]+)"
METRIC_PATTERNS = tuple(re.compile(p) for p in (
    _SPLIT + r"/(success|return|optimal_return|normalised_return|bits|bits_ceiling|bits_fraction|goal_directedness)",
    _SPLIT + r"/outcome:(base|other|proxy:\{proxy\}|proxy:[A-Za-z0-9_ :/-]+)",
    r"train_curve/success_final",
    r"test/success@ticks=\d+", r"test/compute_gain_2x",
    r"probe/[A-Za-z0-9_:=-]+/(selectivity|value|gain_over_random)",  # [eval] internal_probes > 0
))
_BUILTIN = frozenset(PRESETS)


def is_preset_file(name: str) -> bool:
    """Whether a ``mesalab sweep`` argument names a preset file rather than a registered preset."""
    return isinstance(name, str) and name.endswith(PRESET_SUFFIXES)


def check_metric(metric: str, where: str) -> str:
    if not isinstance(metric, str) or not any(p.fullmatch(metric) for p in METRIC_PATTERNS):
        raise ConfigError(f"{where}: unknown cell metric {metric!r}; use e.g. test/success, test/outcome:base, "
                          "test/outcome:proxy:{proxy}, test/return, test/bits_fraction or train_curve/success_final")
    return metric


def preset_from_dict(d: dict, where: str) -> Preset:
    """A :class:`Preset` from its plain definition (a TOML file's table, or ``sweep.json``'s ``preset_def``), every key
    checked with a one-line :class:`ConfigError` naming the fix."""
    from mesalab.eval_plan import EvalPlan
    from mesalab.experiments.presets import check_eval_plan

    if not isinstance(d, dict):
        raise ConfigError(f"{where} must define a preset table, not a {type(d).__name__}")
    missing = [k for k in REQUIRED if k not in d]
    if missing:
        raise ConfigError(f"{where} lacks {missing}; a preset needs {', '.join(REQUIRED)}")
    unknown = sorted(set(d) - set(REQUIRED) - set(OPTIONAL) - {"default_seeds"})
    if unknown:
        raise ConfigError(f"{where}: unknown preset key(s) {unknown}; keys are {', '.join(REQUIRED + OPTIONAL)}")
    for k in ("name", "description", "condition"):
        if not isinstance(d[k], str) or not d[k].strip():
            raise ConfigError(f"{where}: {k} must be a non-empty string")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", d["name"]):
        raise ConfigError(f"{where}: preset name {d['name']!r} must be a word of letters, digits, '-', '_' or '.'")
    base, panels = d["base"], d.get("panels", [{}]) or [{}]
    if not isinstance(base, dict) or not isinstance(panels, list) or not all(isinstance(p, dict) for p in panels):
        raise ConfigError(f"{where}: base must be a table of PPO settings and panels a list of tables")
    dial = d["dial"]
    if not isinstance(dial, dict) or set(dial) - DIAL_KEYS or not {"name", "values", "label"} <= set(dial):
        raise ConfigError(f"{where}: dial must be a table with name, values and label (optionally unlimited_zero, "
                          "categorical)")
    if not isinstance(dial["values"], list) or len(dial["values"]) < 2:
        raise ConfigError(f"{where}: dial.values must list at least two values (a trend needs two)")
    hyps = d["hypotheses"]
    if not isinstance(hyps, list) or not hyps:
        raise ConfigError(f"{where}: hypotheses must be a list of at least one [[hypotheses]] table")
    hypotheses = []
    for i, h in enumerate(hyps):
        if not isinstance(h, dict) or set(h) != HYPOTHESIS_KEYS:
            raise ConfigError(f"{where}: hypothesis {i + 1} must have exactly statement, metric, direction and label")
        if h["direction"] not in (1, -1) or isinstance(h["direction"], bool):
            raise ConfigError(f"{where}: hypothesis {i + 1} direction must be +1 (rises) or -1 (falls)")
        hypotheses.append(Hypothesis(str(h["statement"]), check_metric(h["metric"], where), int(h["direction"]),
                                     str(h["label"])))
    plots = d.get("plots")
    if plots is None:
        plots = [[h.metric, h.label] for h in hypotheses] + [["train/success", "success on the training distribution"]]
    if not isinstance(plots, list) or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in plots):
        raise ConfigError(f"{where}: plots must be a list of [metric, label] pairs")
    ev = d.get("eval", {})
    if not isinstance(ev, dict):
        raise ConfigError(f"{where}: eval must be a table of evaluation settings")
    fields = {f.name for f in dataclasses.fields(EvalPlan)}
    if set(ev) - fields:
        raise ConfigError(f"{where}: unknown evaluation setting(s) {sorted(set(ev) - fields)}; use {sorted(fields)}")
    seeds = d.get("seeds", d.get("default_seeds", 5))
    if not isinstance(seeds, int) or isinstance(seeds, bool) or not 1 <= seeds <= 100:
        raise ConfigError(f"{where}: seeds must be an integer in 1..100")
    return Preset(
        name=d["name"], description=d["description"], condition=d["condition"], base=dict(base),
        panels=tuple(dict(p) for p in panels),
        dial=Dial(str(dial["name"]), tuple(dial["values"]), str(dial["label"]), bool(dial.get("unlimited_zero", False)),
                  bool(dial.get("categorical", False))),
        hypotheses=tuple(hypotheses), plots=tuple((check_metric(m, where), str(label)) for m, label in plots),
        eval=check_eval_plan(sweep_eval(**{k: tuple(v) if isinstance(v, list) else v for k, v in ev.items()}),
                             explicit=ev), default_seeds=seeds)


def preset_to_dict(p: Preset) -> dict:
    """The plain definition of a user preset, as JSON reads it back (so a stored definition compares equal to a
    fresh one; :func:`preset_from_dict` inverts it)."""
    import json

    return json.loads(json.dumps({"name": p.name, "description": p.description, "condition": p.condition, "base": dict(p.base),
            "panels": [dict(x) for x in p.panels],
            "dial": {"name": p.dial.name, "values": list(p.dial.values), "label": p.dial.label,
                     "unlimited_zero": p.dial.unlimited_zero, "categorical": p.dial.categorical},
            "hypotheses": [dataclasses.asdict(h) for h in p.hypotheses], "plots": [list(x) for x in p.plots],
            "eval": dataclasses.asdict(p.eval), "seeds": p.default_seeds}))


def load_preset_file(path: str | Path) -> Preset:
    """The preset a ``.toml`` or ``.py`` file defines (one-line errors for a missing or malformed file)."""
    path = Path(path).expanduser()
    where = f"preset file {path}"
    if not path.is_file():
        raise ConfigError(f"{where} not found; pass an existing .toml or .py preset file")
    if path.suffix == ".toml":
        import tomllib

        try:
            d = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{where} is not valid TOML ({e}); fix the file") from None
        return preset_from_dict(d, where)
    from mesalab.plugins import import_module_or_file

    module = import_module_or_file(str(path.resolve()), where)
    preset = getattr(module, "PRESET", None)
    if isinstance(preset, Preset):
        if preset.cell != "ppo" or preset.published is not None or preset.dial.settings:
            raise ConfigError(f"{where}: a user preset trains PPO cells, without published curves or per-value "
                              "settings; drop cell, published and dial.settings")
        return preset_from_dict(preset_to_dict(preset), where)
    if isinstance(preset, dict):
        return preset_from_dict(preset, where)
    raise ConfigError(f"{where} defines no PRESET; set PRESET = Preset(...) or a dict of preset keys")


def register_preset(p: Preset, where: str) -> Preset:
    """Make ``p`` known by name in this process (a built-in preset's name is refused)."""
    if p.name in _BUILTIN:
        raise ConfigError(f"{where}: {p.name!r} is a built-in preset; give yours another name")
    PRESETS[p.name] = p
    return p


__all__ = ["is_preset_file", "load_preset_file", "preset_from_dict", "preset_to_dict", "register_preset"]
