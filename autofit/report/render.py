"""The report's Jinja2 environment: templates/*.html.j2, autoescaped.

Two choices keep the page as it was when it was built from f-strings: values are escaped with html.escape's
spelling of entities (&quot; and &#x27;, where markupsafe writes &#34; and &#39;), and templates are folded
(a line break and the indentation after it are dropped), so they can be written one element a line while the page
stays one line. A line break in a template therefore never stands for a space: write prose on one line."""

from __future__ import annotations

import html
import re
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from jinja2.ext import Extension
from markupsafe import Markup

from ..trials import StudyAttr
from .style import LIGHT_STATES, STATE_COLORS

_LINE_BREAK = re.compile(r"\n[ \t]*")


class FoldLines(Extension):
    """Drop every line break of a template, with the indentation that follows it."""

    def preprocess(self, source: str, name: str | None, filename: str | None = None) -> str:
        return _LINE_BREAK.sub("", source)


def _escape(value: Any) -> Any:
    """Autoescaping's finalize step: html.escape for plain values; markup (Markup, macros) passes as it is."""
    if hasattr(value, "__html__"):
        return value
    return Markup(html.escape(str(value)))


ENV = Environment(loader=PackageLoader("autofit.report", "templates"),
                  autoescape=select_autoescape(enabled_extensions=("html.j2",)), extensions=[FoldLines],
                  finalize=_escape, undefined=StrictUndefined)
ENV.globals.update(STATE_COLORS=STATE_COLORS, LIGHT_STATES=LIGHT_STATES, StudyAttr=StudyAttr)
ENV.filters["fmt"] = format  # {{ x|fmt(",.0f") }}: Python's format spec, as the f-strings had


def render(template: str, **context: Any) -> str:
    return ENV.get_template(template).render(**context)


def fragment(text: str) -> Markup:
    """HTML built by this package (a figure's div, a note) to insert into a template as it is."""
    return Markup(text)
