"""Collects figures as HTML divs holding their plotly JSON; a figure builder that raises leaves a visible note."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import plotly.graph_objects as go

from ..markup import note_text
from ..render import fragment, render
from ..style import FONT


class Figures:
    """Collects figures as HTML divs. A figure builder that raises leaves a visible note instead of the figure."""

    def __init__(self):
        self.count = 0

    def html(self, build: Callable[[], go.Figure | str], name: str) -> str:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fig = build()
        except Exception as exc:  # a report must never take the search's outputs down with it
            return note_text(f"The {name} figure could not be drawn: {type(exc).__name__}: {exc}", error=True)
        if isinstance(fig, str):  # a note explaining why this study has no such figure
            return fig
        self.count += 1
        fig.update_layout(template="plotly_white", font={"family": FONT, "size": 12},
                          margin={"l": 60, "r": 30, "t": 60, "b": 55}, hoverlabel={"align": "left"})
        # The figure's JSON waits in the page and is drawn once plotly has loaded at the end of the page, so the
        # header and the recommendation show before plotly's start-up. "</" is escaped to keep the script closed
        # (the spec goes into the template as markup: JSON, not text to escape).
        ident = f"fig-{self.count}-{name.replace(' ', '-')}"
        spec = fig.to_json(validate=False).replace("</", "<\\/")
        return render("figure.html.j2", ident=ident, height=int(fig.layout.height or 450), spec=fragment(spec))
