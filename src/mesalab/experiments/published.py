"""Published curves that a preset's measured curve is compared with (shape, not absolute values): the numbers
as data, with where they come from and how they were measured. Kept free of JAX and plotting imports."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PublishedCurve:
    name: str  # a short name for legends
    source: str  # where the numbers are (repository, commit, files), in words
    setup: str  # how they were measured (network, budget, seeds), in words
    quantity: str  # what the y values are
    dial_values: tuple  # the x values (the preset's dial, same units)
    values: tuple[float, ...]  # the y value at each x
    optimum: float  # the optimal agent's value of the same quantity on the same levels
    metric: str  # the cell metric that measures the same quantity here
    normalised_metric: str  # the cell metric that is that quantity over the oracle's (mean return / mean optimum)

    def __post_init__(self):
        if len(self.dial_values) != len(self.values):
            raise ValueError(f"{self.name}: {len(self.dial_values)} dial values but {len(self.values)} values")

    def value_at(self, x) -> float | None:
        return self.values[self.dial_values.index(x)] if x in self.dial_values else None


# jaxgmg, "Cheese in the Corner" on 13x13 mazes: off-distribution (cheese anywhere in the interior) average return
# per level of the policy after training with the cheese in the top-left k x k corner, k = 1..11. The values are
# the last logged row (cycle 2432 of 2441: 2432 x 32 envs x 256 steps = 19.9 M environment steps), to 4 decimals, of
# plots/gmg-corner-13/data/env-eval-off-distribution-avg_return_by_level.csv and
# ...-avg_benchmark_return_by_level.csv (the optimum, the same for every k: the same 256 evaluation levels), added
# in commit 12221b495f3094e16362805fc50cb0f5bb83cd40 (2024-07-17) of github.com/matomatical/jaxgmg together with
# scripts/gmg-corner-13.sh, which ran `jaxgmg train corner --net impala --env-size 13 --env-corner-size K`.
JAXGMG_CORNER_13 = PublishedCurve(
    name="jaxgmg (Cheese in the Corner, 13x13)",
    source="github.com/matomatical/jaxgmg, commit 12221b4 (2024-07-17): plots/gmg-corner-13/data, last logged row "
           "(~19.9 M environment steps) of env/eval/off-distribution/avg_return_by_level and "
           "avg_benchmark_return_by_level, runs cs1..cs11 of scripts/gmg-corner-13.sh",
    setup="PPO with the IMPALA CNN (`--net impala`; at that commit its LSTM is omitted), boolean full-grid "
          "observations, 2048 fixed training levels, 20 M environment steps, one seed per corner side; block mazes "
          "(each interior cell a wall with probability 0.25, so some cheese is unreachable), 64-step episodes, "
          "reward 1 for the cheese discounted at 0.995, averaged over the episodes of 512 steps on each of 256 "
          "levels with the cheese anywhere",
    quantity="average discounted return per level with the cheese anywhere (off-distribution)",
    dial_values=(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11),
    values=(0.1300, 0.1897, 0.2597, 0.3399, 0.4615, 0.5171, 0.6341, 0.6583, 0.6785, 0.6752, 0.6906),
    optimum=0.8819,
    metric="test/return",
    normalised_metric="test/normalised_return",
)
