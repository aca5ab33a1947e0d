"""report.html: one self-contained page to review a search and pick a configuration.

Built from the stored study alone (study and trial user attributes, trial timestamps), so `autofit report OUT`
rebuilds the same page a search wrote. Plotly's JS is inlined once; the page loads nothing from the network and
opens from file://. Top to bottom:

1. header: model, budget, card, probe, dates, trials by state, library versions
2. the recommended configuration: knobs, peak memory against the budget, tokens/s, its files with copy buttons
3. the Pareto front (tokens/s against peak memory) with the budget line and the infeasible trials greyed
4. memory breakdown of the Pareto configurations
5. knob effects: parallel coordinates, Optuna's importances per objective, memory against batch and seq_len
6. history: hypervolume and best tokens/s over trials, a timeline of probes by state
7. every trial in a sortable, filterable table
8. when real probes ran: predicted against measured peak memory

A figure that cannot be drawn for this study (too few trials, no real probes, ...) is replaced by a note saying
why; nothing here may stop a search from writing its outputs.

Layout (like optuna.visualization): data.py is the data step (everything read from the study, no drawing);
figures/ holds one module per plot, each taking the data step's result and returning a plotly figure (or a note
saying why there is none); sections/ builds each section's content; templates/ and static/ hold the page's
markup, CSS and JS; page.py puts them together.
"""

from .page import render_report

__all__ = ["render_report"]
