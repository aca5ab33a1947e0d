"""How long a sequence each strategy takes before it runs out of memory (stored curves, autofit/advice.py)."""

from __future__ import annotations


from ...advice import stored_curves, stored_requirements
from ..figures.seq_len import seq_len_figure
from ..markup import esc


def how_known(curve) -> str:
    confirmed = curve.get("confirmed") or "estimated"
    if confirmed == "estimated":
        return "estimated (trace)"
    word = "measured: the real probe agrees" if confirmed == "measured" else \
        f"measured: moved from the trace's {curve.get('trace_longest_seq_len')}"
    return f"{word} ({curve.get('measured_probes')})"


def seq_len_section(data, figures) -> str:
    curves = stored_curves(data.study)
    if stored_requirements(data.study) is None:
        return ""
    rows = "".join(f"<tr><td>{esc(c['strategy'])}{' <b>(recommended)</b>' if c['recommended'] else ''}</td>"
                   f"<td>{c['longest_seq_len'] or 'none'}{' (model limit)' if c.get('capped_at') else ''}</td>"
                   f"<td>{'' if c['peak_memory_gib'] is None else format(c['peak_memory_gib'], '.2f')}</td>"
                   f"<td>{'' if c['tokens_per_s'] is None else format(c['tokens_per_s'], ',.0f')}</td>"
                   f"<td>{esc(how_known(c))}</td></tr>"
                   for c in curves)
    table = (f"<table><tr><th>strategy</th><th>longest seq_len that fits</th><th>peak GiB there</th>"
             f"<th>tokens/s there</th><th>measured or estimated</th></tr>{rows}</table>") if curves else ""
    return (f"<section id='seq-len'><h2>Sequence length</h2><p class='muted'>How long a sequence each strategy "
            f"takes before it runs out of memory: the recommendation and the fastest configuration of other "
            f"strategies on the front, with their knobs kept and seq_len raised, by bisection on the trace probe "
            f"(estimated; also in seq-len.csv). Raise your cutoff_len / sequence_len up to here.</p>"
            f"{figures.html(lambda: seq_len_figure(data), 'seq-len')}{table}</section>")
