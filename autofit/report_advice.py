"""The report's sections about the user's requirements: what was required (and from where), why the recommendation
was chosen, the concessions (what fits, or is gained, by giving a requirement up), and the sequence-length curve.
Called from report.render_report; the figures come from the study's stored advice (autofit/advice.py)."""

from __future__ import annotations

import plotly.graph_objects as go

from .advice import stored_concessions, stored_curves, stored_requirements


def requirements_section(data) -> str:
    from .report import _esc, _note

    req = stored_requirements(data.study)
    if req is None:
        return ""
    from .requirements import GLOBAL_BATCH_FREE

    shown = [(k, v, req.sources[k] + (f"; conceded: {req.conceded[k]} used instead" if k in req.conceded else ""))
             for k, v in req.values.items()]
    shown.append(("global batch", GLOBAL_BATCH_FREE if req.global_batch is None else req.global_batch,
                  req.global_batch_source))
    rows = "".join(f"<tr><td>{_esc(k)}</td><td>{_esc(v)}</td><td>{_esc(src)}</td></tr>" for k, v, src in shown)
    notes = "".join(f"<li>{_esc(n)}</li>" for n in req.notes)
    conceded = ""
    if req.conceded:
        conceded = _note("<b>Conceded:</b> " + "; ".join(
            f"{_esc(k)} {_esc(v)} instead of the default {_esc(req.values[k])}, because nothing with "
            f"{_esc(req.values[k])} fits on one GPU without DeepSpeed offload" for k, v in req.conceded.items())
            + ". Pass the requirement explicitly (e.g. --quantization none) to refuse this.")
    reason = data.rec.reason if data.rec is not None else ""
    why = f"<p><b>Why this configuration:</b> {_esc(reason)}.</p>" if reason else ""
    concessions = stored_concessions(data.study)
    items = "".join(f"<tr><td>{_esc(c['knob'])}</td><td>{_esc(c['value'])}</td><td>{_esc(c['required'])}</td>"
                    f"<td>{c['peak_memory_gib']:.2f}</td>"
                    f"<td>{'' if c['peak_delta_gib'] is None else format(c['peak_delta_gib'], '+.2f')}</td>"
                    f"<td>{c['tokens_per_s']:,.0f}</td>"
                    f"<td>{'' if c['tokens_delta_pct'] is None else format(c['tokens_delta_pct'], '+.0f') + '%'}</td>"
                    f"<td>{'yes' if c['fits'] else 'no'}</td><td>{'taken' if c['applied'] else ''}</td></tr>"
                    for c in concessions)
    table = (f"<h3>Concessions (estimated)</h3><p class='muted'>Each row gives up one requirement on the recommended "
             f"configuration (its other knobs kept) and shows what that changes, against the recommendation: what you "
             f"could gain, never taken silently.</p><table><tr><th>knob</th><th>instead</th><th>required</th>"
             f"<th>peak GiB</th><th>Δ GiB</th><th>tokens/s</th><th>Δ tokens/s</th><th>fits</th><th></th></tr>"
             f"{items}</table>") if concessions else ""
    return (f"<section id='requirements'><h2>Requirements and concessions</h2><p class='muted'>Knobs that change "
            f"what is trained (seq_len, LoRA rank, quantization, full vs LoRA, global batch) are requirements: the "
            f"recommendation meets them. The others (batch and accumulation, checkpointing, ZeRO/offload, optimizer, "
            f"attention, allocator) only trade speed for memory.</p><table><tr><th>requirement</th><th>value</th>"
            f"<th>source</th></tr>{rows}</table>{'<ul>' + notes + '</ul>' if notes else ''}{conceded}{why}{table}"
            f"</section>")


def seq_len_figure(data) -> go.Figure | str:
    from .report import _budget_line, _note

    curves = stored_curves(data.study)
    if not curves:
        return _note("No sequence-length curve: no configuration fits the budget.")
    fig = go.Figure()
    for curve in curves:
        points = sorted(curve["points"])
        name = curve["strategy"] + (" (recommended)" if curve["recommended"] else "")
        fig.add_trace(go.Scatter(x=[p[0] for p in points], y=[p[1] for p in points], mode="lines+markers", name=name,
                                 hovertemplate="seq_len %{x}<br>peak %{y:.2f} GiB (estimated)<extra>" + name
                                 + "</extra>"))
    _budget_line(fig, data.budget, axis="y")
    fig.update_layout(title="Peak memory against sequence length (estimated, traced)", xaxis_title="seq_len (tokens)",
                      yaxis_title="peak GPU memory (GiB)", height=430)
    return fig


def _how_known(curve) -> str:
    confirmed = curve.get("confirmed") or "estimated"
    if confirmed == "estimated":
        return "estimated (trace)"
    word = "measured: the real probe agrees" if confirmed == "measured" else \
        f"measured: moved from the trace's {curve.get('trace_longest_seq_len')}"
    return f"{word} ({curve.get('measured_probes')})"


def seq_len_section(data, figures) -> str:
    from .report import _esc

    curves = stored_curves(data.study)
    if stored_requirements(data.study) is None:
        return ""
    rows = "".join(f"<tr><td>{_esc(c['strategy'])}{' <b>(recommended)</b>' if c['recommended'] else ''}</td>"
                   f"<td>{c['longest_seq_len'] or 'none'}{' (model limit)' if c.get('capped_at') else ''}</td>"
                   f"<td>{'' if c['peak_memory_gib'] is None else format(c['peak_memory_gib'], '.2f')}</td>"
                   f"<td>{'' if c['tokens_per_s'] is None else format(c['tokens_per_s'], ',.0f')}</td>"
                   f"<td>{_esc(_how_known(c))}</td></tr>"
                   for c in curves)
    table = (f"<table><tr><th>strategy</th><th>longest seq_len that fits</th><th>peak GiB there</th>"
             f"<th>tokens/s there</th><th>measured or estimated</th></tr>{rows}</table>") if curves else ""
    return (f"<section id='seq-len'><h2>Sequence length</h2><p class='muted'>How long a sequence each strategy "
            f"takes before it runs out of memory: the recommendation and the fastest configuration of other "
            f"strategies on the front, with their knobs kept and seq_len raised, by bisection on the trace probe "
            f"(estimated; also in seq-len.csv). Raise your cutoff_len / sequence_len up to here.</p>"
            f"{figures.html(lambda: seq_len_figure(data), 'seq-len')}{table}</section>")
