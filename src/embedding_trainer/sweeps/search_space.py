"""A search space written in Hydra's override grammar, as Optuna distributions.

`choice(a, b, ...)` (also `a,b`) is a `CategoricalDistribution`; choices that are lists or dicts
(`choice([384,128],[384,256,128])`) are stored by their override text, since Optuna choices must be
scalars. `interval(lo, hi)` is a `FloatDistribution` (`int(interval(...))`: an `IntDistribution`),
`range(start, stop, step)` an `IntDistribution` (or a stepped `FloatDistribution`) over the values the
range yields (stop excluded); `tag(log, ...)` makes an interval log-scale. Any other value is a fixed
override that every trial gets.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep, Override
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from embedding_trainer.utils.errors import ConfigError

SCALARS = (str, int, float, bool)


@dataclass
class SearchSpace:
    """What to search (`distributions`, by override key) and what to fix (`fixed`, override strings)."""

    distributions: dict[str, BaseDistribution]
    fixed: list[str]
    choice_texts: dict[str, dict[Any, str]] = field(default_factory=dict)

    def draw_missing(self, trial: optuna.Trial) -> None:
        """Draw the parameters `trial` lacks (a sweep killed while asking it stored none or some);
        a parameter already drawn keeps its value."""
        for name, distribution in self.distributions.items():
            if name in trial.params:
                continue
            if isinstance(distribution, CategoricalDistribution):
                trial.suggest_categorical(name, distribution.choices)
            elif isinstance(distribution, IntDistribution):
                trial.suggest_int(
                    name, distribution.low, distribution.high, step=distribution.step, log=distribution.log
                )
            else:
                trial.suggest_float(
                    name, distribution.low, distribution.high, step=distribution.step, log=distribution.log
                )

    def overrides(self, params: Mapping[str, Any]) -> list[str]:
        """The override list of a trial with these sampled `params`."""
        return self.fixed + [f"{key}={self._text(key, value)}" for key, value in params.items()]

    def _text(self, key: str, value: Any) -> str:
        if value in self.choice_texts.get(key, {}):
            return self.choice_texts[key][value]
        return "null" if value is None else repr(value) if isinstance(value, float) else str(value)


def parse_search_space(params: Mapping[str, Any], arguments: Sequence[str]) -> SearchSpace:
    """The search space of the sweeper's `params` (key -> override value text) and the command-line
    `arguments` (which win for the same key)."""
    lines = [f"{key}={value}" for key, value in params.items()] + list(arguments)
    overrides = {
        override.get_key_element(): override for override in OverridesParser.create().parse_overrides(lines)
    }
    space = SearchSpace({}, [])
    for key, override in overrides.items():
        if not override.is_sweep_override():
            space.fixed.append(override.input_line)
        elif override.is_choice_sweep():
            values = [
                value if isinstance(value, SCALARS) else text
                for value, text in zip(override.sweep_iterator(), override.sweep_string_iterator())
            ]
            space.distributions[key] = CategoricalDistribution(values)
            space.choice_texts[key] = dict(zip(values, override.sweep_string_iterator()))
        elif override.is_range_sweep():
            space.distributions[key] = _range_distribution(key, override)
        else:
            space.distributions[key] = _interval_distribution(key, override.value())
    return space


def _range_distribution(key: str, override: Override) -> BaseDistribution:
    values = list(override.sweep_iterator())
    if not values:
        raise ConfigError(f"Sweep parameter {key}={override.get_value_string()} is an empty range.")
    step = override.value().step
    if all(isinstance(value, int) for value in values):
        return IntDistribution(values[0], values[-1], step=step)
    return FloatDistribution(values[0], values[-1], step=step)


def _interval_distribution(key: str, interval: IntervalSweep) -> BaseDistribution:
    log = "log" in interval.tags
    if interval.start >= interval.end or (log and interval.start <= 0):
        raise ConfigError(
            f"Sweep parameter {key}: interval({interval.start}, {interval.end}) needs start < end"
            + (" and start > 0 on a log scale." if log else ".")
        )
    if isinstance(interval.start, int) and isinstance(interval.end, int):
        return IntDistribution(interval.start, interval.end, log=log)
    return FloatDistribution(float(interval.start), float(interval.end), log=log)
