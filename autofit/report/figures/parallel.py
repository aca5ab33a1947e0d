"""Optuna's parallel coordinates of the configurations that fit, with short knob names and merged lines."""

from __future__ import annotations

import optuna
import plotly.graph_objects as go

from ..data import SHORT, ReportData, complete_trials, estimated_mark, num, searched_params
from ..markup import note, si

PARALLEL_MAX_LINES = 200


def parallel_figure(data: ReportData) -> go.Figure | str:
    trials = complete_trials(data)
    params = searched_params(data, trials)
    if len(trials) < 2 or not params:
        return note("Parallel coordinates need at least two configurations that fit, differing in a knob.")
    mark = estimated_mark(trials)
    study, shown = data.study, f"the {len(trials)} configurations that fit"
    if len(trials) > PARALLEL_MAX_LINES:  # one SVG line per trial: keep the page quick, show the fast end
        fastest = sorted(trials, key=lambda t: -t.values[0])[:PARALLEL_MAX_LINES]
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created in memory" line
        try:
            study = optuna.create_study(directions=data.study.directions)
        finally:
            optuna.logging.set_verbosity(verbosity)
        study.add_trials(fastest)
        shown = f"the {PARALLEL_MAX_LINES} fastest of the {len(trials)} configurations that fit"
    fig = optuna.visualization.plot_parallel_coordinate(
        study, params=params, target=lambda t: t.values[0], target_name=f"tokens/s{mark}")
    merge_lines(fig)
    # Optuna truncates long knob names and prints the objective's ticks as 1.59e+03: use short names, 1.59k
    def knob_of(label: str) -> str:
        stem = label[:-3] if label.endswith("...") else None
        for knob in params:
            if knob == label or (stem and knob.startswith(stem)):
                return SHORT.get(knob, knob)
        return label

    fig.update_xaxes(ticktext=[knob_of(str(label)) for label in (fig.layout.xaxis.ticktext or ())])
    for annotation in fig.layout.annotations:
        if annotation.x == 0 and num(annotation.text) is not None:
            annotation.text = si(float(annotation.text))
    fig.update_layout(title=f"Knobs of {shown}, coloured by tokens/s{mark}",
                      height=460, margin={"l": 80, "r": 60, "t": 90, "b": 40})
    return fig


def merge_lines(fig: go.Figure, step: int = 12) -> None:
    """Optuna draws one line trace per trial; plotly's cost grows with traces, not points. Join the lines whose
    colours agree within `step` (of 255) into one trace each, separated by gaps, hover text kept per point."""
    groups: dict[tuple, list] = {}
    kept = []
    for trace in fig.data:
        color = str(getattr(trace.line, "color", "") or "") if trace.type == "scatter" else ""
        if trace.mode != "lines" or trace.showlegend is not False or not color.startswith("rgb(") or \
                trace.customdata is None:
            kept.append(trace)
            continue
        rgb = tuple(min(255, round(float(c) / step) * step) for c in color[4:-1].split(","))
        groups.setdefault((rgb, trace.line.dash, trace.line.width, trace.opacity, trace.hovertemplate),
                          []).append(trace)
    if not groups:
        return
    merged = []
    for (rgb, dash, width, opacity, template), traces in groups.items():
        x, y, custom = [], [], []
        for trace in traces:
            x += [*trace.x, None]
            y += [*trace.y, None]
            custom += [*map(list, trace.customdata), [None, None]]
        merged.append(go.Scatter(x=x, y=y, customdata=custom, mode="lines", showlegend=False, opacity=opacity,
                                 hovertemplate=template, connectgaps=False,
                                 line={"color": f"rgb{rgb}", "dash": dash, "width": width}))
    fig.data = ()
    for trace in [*merged, *kept]:
        fig.add_trace(trace)
