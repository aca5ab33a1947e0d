"""Search spaces: which values each knob may take in a search, and its default.

A space file (YAML) has a `knobs:` mapping. Each knob has either
    choices: [v1, v2, ...]
or an integer range
    low: 1
    high: 64
    step: 1        # optional; every step-th integer from low
    log: true      # optional; a doubling grid low, 2*low, 4*low, ... <= high (instead of step)
and a `default:` used by `autofit estimate` and for knobs a space leaves out (defaults of the
built-in default space). Pins (--set) replace a knob's values with one value, which need not be
in the space's list but must be valid for the knob.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .errors import AutofitError
from .knobs import KNOBS, TrainingConfig, knob_specs
from .validation import limits

DEFAULT_SPACE = "default.yaml"


def builtin_space_path(name: str = DEFAULT_SPACE) -> Path:
    """Path of a space shipped with autofit (search_spaces/ in the source tree, autofit/search_spaces installed)."""
    return Path(str(resources.files("autofit.search_spaces").joinpath(name)))


@dataclass(frozen=True)
class SearchSpace:
    """The values a search may give each knob, and each knob's default."""

    values: dict[str, tuple] = field(hash=False)
    defaults: dict[str, Any] = field(hash=False)
    source: str = "<memory>"

    @classmethod
    def load(cls, path: str | Path | None = None) -> SearchSpace:
        path = Path(path) if path is not None else builtin_space_path()
        data = _read_space_yaml(path)
        if not isinstance(data, dict) or not isinstance(data.get("knobs"), dict):
            raise AutofitError(f"malformed space file {path}: expected a 'knobs:' mapping")
        fallback = None if path.resolve() == builtin_space_path().resolve() else cls.load(builtin_space_path())
        return cls.from_mapping(data["knobs"], fallback=fallback, source=str(path))

    @classmethod
    def from_mapping(cls, knobs: dict[str, Any], fallback: SearchSpace | None = None,
                     source: str = "<memory>") -> SearchSpace:
        specs = knob_specs()
        values: dict[str, tuple] = {}
        defaults: dict[str, Any] = {}
        for name, entry in knobs.items():
            if name not in specs:
                raise AutofitError(f"space {source}: unknown knob {name!r}; knobs are: {', '.join(specs)}")
            if not isinstance(entry, dict):
                raise AutofitError(f"space {source}: knob {name} needs 'choices' or 'low'/'high', and 'default'")
            values[name] = _knob_values(name, entry, source)
            if "default" not in entry:
                raise AutofitError(f"space {source}: knob {name} has no default")
            try:
                defaults[name] = specs[name].parse(entry["default"])
            except AutofitError as exc:
                raise AutofitError(f"space {source}: default of {exc}") from None
        for name in KNOBS:
            if name not in values:
                if fallback is None:
                    raise AutofitError(f"space {source}: knob {name} missing")
                values[name] = (fallback.defaults[name],)
                defaults[name] = fallback.defaults[name]
        space = cls(values=values, defaults=defaults, source=source)
        if space.size > limits()["space_configs_max"]:
            raise AutofitError(f"space {source} holds {space.size:,} configurations, more than "
                               f"{limits()['space_configs_max']:,}; narrow some knobs")
        return space

    def pinned(self, pins: dict[str, Any]) -> SearchSpace:
        """This space with each pinned knob reduced to its one value (and that value as default)."""
        values = dict(self.values)
        defaults = dict(self.defaults)
        for name, value in pins.items():
            values[name] = (value,)
            defaults[name] = value
        return SearchSpace(values=values, defaults=defaults, source=self.source)

    def default_config(self) -> TrainingConfig:
        return TrainingConfig.from_dict(self.defaults)

    @property
    def size(self) -> int:
        total = 1
        for name in KNOBS:
            total *= len(self.values[name])
        return total

    def configs(self):
        """Every configuration in the space (the Cartesian product), valid or not."""
        for combo in itertools.product(*(self.values[name] for name in KNOBS)):
            yield TrainingConfig(*combo)


def _read_space_yaml(path: Path) -> Any:
    """A space file's YAML, within data/limits.yaml's bounds: a regular file of bounded size (not /dev/zero or
    a fifo), nesting and alias expansion bounded (a few hundred bytes of aliases can expand to billions of
    nodes), so a hostile file costs one error line, not the machine's memory."""
    lim = limits()
    try:
        if not path.exists():
            raise AutofitError(f"space file not found: {path}")
        if not path.is_file():
            raise AutofitError(f"space file {path} is not a regular file")
        with open(path, "rb") as handle:
            raw = handle.read(lim["space_file_max_bytes"] + 1)
        if len(raw) > lim["space_file_max_bytes"]:
            raise AutofitError(f"space file {path} is larger than {lim['space_file_max_bytes']:,} bytes")
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AutofitError(f"cannot read space file {path}: {exc}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is not None:
            _check_node_size(node, path, lim["space_max_nodes"], lim["space_max_depth"])
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise AutofitError(f"malformed space file {path}{where}: {getattr(exc, 'problem', exc)}") from None
    except RecursionError:
        raise AutofitError(f"space file {path} is nested too deeply") from None


def _check_node_size(root: yaml.Node, path: Path, max_nodes: int, max_depth: int) -> None:
    """Refuse a composed YAML document that nests deeper than `max_depth` or expands (aliases followed) to
    more than `max_nodes` nodes. Sizes are memoised per node, so an alias bomb is measured without expanding it."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node, depth: int) -> int:
        if depth > max_depth:
            raise AutofitError(f"space file {path} nests deeper than {max_depth} levels")
        if id(node) in sizes:
            return sizes[id(node)]
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(child, depth + 1) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(k, depth + 1) + size(v, depth + 1) for k, v in node.value)
        if total > max_nodes:
            raise AutofitError(f"space file {path} expands to more than {max_nodes:,} YAML nodes "
                               f"(aliases counted as copies)")
        sizes[id(node)] = total
        return total

    size(root, 0)


def _knob_values(name: str, entry: dict[str, Any], source: str) -> tuple:
    spec = knob_specs()[name]
    try:
        if "choices" in entry:
            choices = entry["choices"]
            if not isinstance(choices, list) or not choices:
                raise AutofitError(f"knob {name}: choices must be a non-empty list")
            if len(choices) > limits()["knob_values_max"]:
                raise AutofitError(f"knob {name}: more than {limits()['knob_values_max']:,} choices")
            return tuple(dict.fromkeys(spec.parse(v) for v in choices))
        if "low" in entry and "high" in entry:
            if spec.type != "int":
                raise AutofitError(f"knob {name}: a low/high range needs an integer knob")
            low, high = spec.parse(entry["low"]), spec.parse(entry["high"])
            if high < low:
                raise AutofitError(f"knob {name}: high {high} is below low {low}")
            if entry.get("log"):
                if low < 1:
                    raise AutofitError(f"knob {name}: a log range needs low >= 1")
                grid, value = [], low
                while value <= high:
                    grid.append(value)
                    value *= 2
                return tuple(grid)
            step = entry.get("step", 1)
            if isinstance(step, bool) or not isinstance(step, int) or step < 1:  # YAML `true` is not 1
                raise AutofitError(f"knob {name}: step must be a positive integer")
            count = (high - low) // step + 1
            if count > limits()["knob_values_max"]:
                raise AutofitError(f"knob {name}: {low}..{high} step {step} is {count:,} values, more than "
                                   f"{limits()['knob_values_max']:,}; use a larger step or log: true")
            return tuple(range(low, high + 1, step))
    except AutofitError as exc:
        raise AutofitError(f"space {source}: {exc}") from None
    raise AutofitError(f"space {source}: knob {name} needs 'choices' or 'low' and 'high'")
