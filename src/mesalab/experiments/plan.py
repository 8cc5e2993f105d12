"""The cells of a sweep and how they are batched for training.

A *batch* is what one worker trains as a single vmapped, jitted program: the cells of one panel that share
every shape setting. A data dial (α, weight decay) is vmapped together with seeds, so one batch holds every
value of the dial for a block of seeds; a shape dial (N, width) gives one batch per value. Seeds are blocked
by value (``seed // seeds_per_batch``), so a batch's composition does not depend on how many seeds the
sweep asked for, and a resumed sweep trains exactly the batches it had not finished.
"""

from __future__ import annotations

from dataclasses import dataclass

from mesalab.errors import ConfigError
from mesalab.experiments.presets import Preset

BATCH_WIDTH = 8  # cells per vmapped batch (about) when the dial is data


@dataclass(frozen=True)
class Cell:
    cell_id: str
    panel: str
    value: float | int
    seed: int
    config: dict  # the full config of this cell (PPOConfig or ICLConfig, see Preset.cell)


@dataclass(frozen=True)
class Batch:
    batch_id: str
    config: dict  # the shared PPOConfig (the data dial at its first cell's value)
    data_dial: str | None  # name of the vmapped data dial, if any
    cells: tuple[Cell, ...]


def cell_id(panel: str, dial: str, value, seed: int) -> str:
    return f"{panel}|{dial}={value!r}|seed={seed}"


def cell_config_class(preset: Preset):
    """The config class of one cell of ``preset``: PPOConfig, ICLConfig, ThinkingConfig or AlphaZeroConfig."""
    if preset.cell == "alphazero":
        from mesalab.optimizers.alphazero import AlphaZeroConfig

        return AlphaZeroConfig
    if preset.cell == "icl":
        from mesalab.optimizers.supervised import ICLConfig

        return ICLConfig
    if preset.cell == "maze-path":
        from mesalab.optimizers.thinking import ThinkingConfig

        return ThinkingConfig
    from mesalab.optimizers import PPOConfig

    return PPOConfig


def cells(preset: Preset, seeds: list[int]) -> list[Cell]:
    config_cls = cell_config_class(preset)
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ConfigError("seeds must be distinct non-negative integers; pass --seeds K (K >= 1)")
    out = []
    for panel in preset.panels:
        name = preset.panel_name(panel)
        for value in preset.dial.values:
            cfg = config_cls.from_dict({**preset.base, **panel, preset.dial.name: value,
                                       **preset.dial.settings_for(value)}).to_dict()
            for seed in seeds:
                out.append(Cell(cell_id(name, preset.dial.name, value, seed), name, value, int(seed), cfg))
    return out


def batches(preset: Preset, seeds: list[int], done: set[str] = frozenset()) -> list[Batch]:
    """The batches that still have unfinished cells (finished ones, ``done``, are left out)."""
    todo = [c for c in cells(preset, seeds) if c.cell_id not in done]
    dial = preset.dial
    is_data = dial.is_data and preset.cell == "ppo"
    # PPO and AlphaZero cells are vmapped together (seeds); ICL and maze-path cells are trained one after another
    # anyway, so one cell per batch spreads them evenly over the workers and commits each as soon as it is done
    vmapped = preset.cell in ("ppo", "alphazero")
    per_batch = max(1, BATCH_WIDTH // len(dial.values)) if is_data else (BATCH_WIDTH if vmapped else 1)
    groups: dict[tuple, list[Cell]] = {}
    for c in todo:
        shape_key = (c.panel, None if is_data else c.value, c.seed // per_batch)
        groups.setdefault(shape_key, []).append(c)
    out = []
    for (panel, value, block), members in groups.items():
        shown = "all" if value is None else dial.display(value)
        out.append(Batch(f"{panel}|{dial.name}={shown}|seeds-block={block}", members[0].config,
                         dial.name if is_data else None, tuple(members)))
    return out
