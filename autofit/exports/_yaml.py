"""A small YAML writer for the trainer formats: ordered keys, section comments, scalars every
YAML loader the trainers use reads back as written."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import yaml

_NUMBER_LIKE = re.compile(
    r"[-+]?(\.[0-9_]+|[0-9][0-9_]*\.?[0-9_]*)([eE][-+]?[0-9]+)?|[-+]?\.?(inf|Inf|INF|nan|NaN|NAN)"
)


def scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot export non-finite number {value!r}")
        text = repr(value)
        if "e" in text:
            # "1.0e-5" form: YAML 1.1 (PyYAML) reads an exponent as a float only
            # when the mantissa has a dot and the exponent a sign.
            mantissa, exp = text.split("e")
            if "." not in mantissa:
                mantissa += ".0"
            text = f"{mantissa}e{'-' if exp.startswith('-') else '+'}{int(exp.lstrip('+-'))}"
        return text
    if isinstance(value, str):
        if not value.isprintable() or _NUMBER_LIKE.fullmatch(value):
            # Number-like strings: PyYAML keeps e.g. 1e5 a string, but YAML 1.2
            # loaders (OmegaConf, used by LLaMA-Factory) read a number. Control
            # characters/newlines: keep the value on one escaped line.
            return json.dumps(value)
        text = yaml.safe_dump(value, default_flow_style=True, width=10_000, allow_unicode=True).strip()
        if text.endswith("\n..."):
            text = text[: -len("\n...")]
        elif text.endswith("..."):
            text = text[: -len("...")].rstrip()
        return text
    raise TypeError(f"unsupported YAML scalar {value!r}")


def yaml_lines(items: list) -> list[str]:
    """items: ("# comment") | ("", ) blank | (key, value) | (key, value, trailing comment)."""
    lines: list[str] = []
    for item in items:
        if isinstance(item, str):
            lines.append(item)
            continue
        key, value, *rest = item
        if isinstance(value, dict):
            line = f"{key}:"
            lines.append(line + (f"  # {rest[0]}" if rest else ""))
            for sub_key, sub_value in value.items():
                lines.append(f"  {sub_key}: {scalar(sub_value)}")
        elif isinstance(value, list):
            lines.append(f"{key}:" + (f"  # {rest[0]}" if rest else ""))
            for entry in value:
                first = True
                for sub_key, sub_value in entry.items():
                    prefix = "  - " if first else "    "
                    lines.append(f"{prefix}{sub_key}: {scalar(sub_value)}")
                    first = False
        else:
            line = f"{key}: {scalar(value)}"
            lines.append(line + (f"  # {rest[0]}" if rest else ""))
    return lines


def join_lines(lines: list[str]) -> str:
    return "\n".join(lines).rstrip("\n") + "\n"
