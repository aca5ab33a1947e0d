"""Small HTML fragments for Python callers (figures' notes), from templates/macros.html.j2, and number formats."""

from __future__ import annotations

from collections.abc import Callable

from markupsafe import Markup

from .render import ENV, fragment

_MACROS = ENV.get_template("macros.html.j2").module  # the templates' own note, for figures built in Python


def _macro(name: str) -> Callable[..., Markup]:
    return getattr(_MACROS, name)


def note(text: str, error: bool = False) -> str:
    """A grey (or, with error, red) note; `text` is HTML."""
    return str(_macro("note")(fragment(text), error))


def note_text(text: str, error: bool = False) -> str:
    """A note whose `text` is plain text (escaped)."""
    return str(_macro("note")(text, error))


def fmt_count(n: float | None) -> str:
    if n is None:
        return "?"
    for size, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n:.0f}"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def si(value: float) -> str:
    """1590 -> 1.59k, 2235449 -> 2.24M."""
    for size, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{unit}"
    return f"{value:.3g}"
