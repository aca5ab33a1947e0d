"""The user's requirements: what was required (and from where), why the recommendation was chosen, and the
concessions (what fits, or is gained, by giving a requirement up), from the study's stored advice
(autofit/advice.py)."""

from __future__ import annotations

from ...advice import stored_concessions, stored_requirements
from ...requirements import GLOBAL_BATCH_FREE
from ..markup import esc, note


def requirements_section(data) -> str:
    req = stored_requirements(data.study)
    if req is None:
        return ""
    shown = [(k, v, req.sources[k] + (f"; conceded: {req.conceded[k]} used instead" if k in req.conceded else ""))
             for k, v in req.values.items()]
    shown.append(("global batch", GLOBAL_BATCH_FREE if req.global_batch is None else req.global_batch,
                  req.global_batch_source))
    rows = "".join(f"<tr><td>{esc(k)}</td><td>{esc(v)}</td><td>{esc(src)}</td></tr>" for k, v, src in shown)
    notes = "".join(f"<li>{esc(n)}</li>" for n in req.notes)
    conceded = ""
    if req.conceded:
        conceded = note("<b>Conceded:</b> " + "; ".join(
            f"{esc(k)} {esc(v)} instead of the default {esc(req.values[k])}, because nothing with "
            f"{esc(req.values[k])} fits on one GPU without DeepSpeed offload" for k, v in req.conceded.items())
            + ". Pass the requirement explicitly (e.g. --quantization none) to refuse this.")
    reason = data.rec.reason if data.rec is not None else ""
    why = f"<p><b>Why this configuration:</b> {esc(reason)}.</p>" if reason else ""
    concessions = stored_concessions(data.study)
    items = "".join(f"<tr><td>{esc(c['knob'])}</td><td>{esc(c['value'])}</td><td>{esc(c['required'])}</td>"
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
