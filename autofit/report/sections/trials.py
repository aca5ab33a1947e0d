"""7. Every trial in a sortable, filterable table."""

from __future__ import annotations

from ..data import SHORT, ReportData, isnan, num
from ..markup import badge, esc, state_chip


def trials_section(data: ReportData) -> str:
    frame = data.frame.sort_values("number")
    measured = [c for c in ("predicted_peak_gib", "peak_allocated_gib", "peak_reserved_gib", "prediction_error_pct",
                            "runtime_reserve_gib") if c in frame and frame[c].notna().any()]
    mark_all = data.all_estimated
    hdr_mark = " (estimated)" if mark_all else ""
    columns: list[tuple[str, str, str]] = [("number", "#", ""), ("state", "state", "t"), ("mark", "front", "t")]
    columns += [("peak_memory_gib", f"peak GiB{hdr_mark}", ""), ("tokens_per_s", f"tokens/s{hdr_mark}", "")]
    labels = {"predicted_peak_gib": "predicted GiB (estimated)", "peak_allocated_gib": "measured alloc GiB",
              "peak_reserved_gib": "measured reserved GiB", "prediction_error_pct": "prediction error %",
              "runtime_reserve_gib": "runtime reserve GiB (measured: context, workspaces)"}
    columns += [(c, labels[c], "") for c in measured]
    columns += [(k, SHORT.get(k, k), "t" if k in ("quantization", "offload", "optimizer", "attn_implementation",
                                                  "allocator", "gradient_checkpointing") else "")
                for k in data.varying]
    est_values = {bool(v) for v in frame["estimated"] if v is not None and not isnan(v)}
    if len(est_values) > 1 or set(frame["probe"].dropna()) - {"trace"}:
        columns += [("numbers", "numbers", "t")]  # mixed trace and real figures: say which is which per row
    columns += [("duration_s", "probe s", ""), ("error", "note", "t")]
    front = set(data.front["number"])
    rec_number = data.rec.trial.number if data.rec else None
    body = []
    for _, r in frame.iterrows():
        number = int(r["number"])
        est = bool(r["estimated"]) if r["estimated"] is not None and not isnan(r["estimated"]) else None
        cells = []
        for key, _, cls in columns:
            if key == "number":
                cells.append(f'<td data-v="{number}">{number}</td>')
            elif key == "state":
                cells.append(f'<td class="t">{state_chip(str(r["state"]))}</td>')
            elif key == "mark":
                mark = "★ recommended" if number == rec_number else ("◆ front" if number in front else "")
                cells.append(f'<td class="t mark">{mark}</td>')
            elif key in ("peak_memory_gib", "tokens_per_s"):
                value = num(r[key])
                ecls = ' class="e" title="estimated"' if est else ""
                text = "" if value is None else (f"{value:.3f}" if key == "peak_memory_gib" else f"{value:,.0f}")
                cells.append(f'<td data-v="{"" if value is None else value!r}"{ecls}>{text}</td>')
            elif key in measured or key == "duration_s":
                value = num(r[key])
                ecls = ' class="e" title="estimated"' if key == "predicted_peak_gib" and value is not None else ""
                digits = 1 if key in ("prediction_error_pct",) else (2 if key == "duration_s" else 3)
                text = "" if value is None else f"{value:.{digits}f}"
                cells.append(f'<td data-v="{"" if value is None else value!r}"{ecls}>{text}</td>')
            elif key == "numbers":
                probe = r["probe"] if isinstance(r["probe"], str) else ""
                cells.append(f'<td class="t">{esc(probe)} {badge(est) if est is not None else "not probed"}</td>')
            elif key == "error":
                text = "" if r["error"] is None or isnan(r["error"]) else str(r["error"])
                cells.append(f'<td class="err" title="{esc(text)}">{esc(text[:140])}</td>')
            else:
                value = r[key]
                numeric = num(value) if not isinstance(value, (bool, str)) else None
                attr = f' data-v="{numeric!r}"' if numeric is not None else ""
                cells.append(f'<td{attr}{" class=t" if cls else ""}>{esc(value)}</td>')
        classes = "rec" if number == rec_number else ("front" if number in front else "")
        body.append(f'<tr data-state="{esc(r["state"])}" class="{classes}">{"".join(cells)}</tr>')
    heads = "".join(f'<th class="sort {cls}" title="{esc(key)}: click to sort">{esc(label)}</th>'
                    for key, label, cls in columns)
    filters = "".join(f'<th><input data-col="{i}" placeholder="filter" aria-label="filter {esc(label)}"></th>'
                      for i, (_, label, _) in enumerate(columns))
    counts = frame["state"].value_counts()
    boxes = "".join(f'<label><input type="checkbox" value="{esc(s)}" checked>{state_chip(str(s))} {int(n)}</label>'
                    for s, n in counts.items())
    constant = ", ".join(f"{k}={v}" for k, v in data.constant.items() if k not in data.varying)
    mark_text = (f" All numbers here are {badge(True)}: trace-probe figures." if mark_all else
                 f" Numbers marked {badge(True)} come from the trace probe; {badge(False)} ones from real runs.")
    return (f"<section id='trials-section'><h2>Every trial</h2><p class='muted'>{len(frame)} trials. Click a "
            f"column to sort; type in the filter row: text, or a comparison such as <code>&gt;0.5</code>, "
            f"<code>&lt;=8</code>, <code>!oom</code>.{mark_text}"
            + (f" Same in every trial: <code>{esc(constant)}</code>." if constant else "") + "</p>"
            f"<div class='controls'><span id='state-filter'>{boxes}</span><input type='search' id='trial-search' "
            f"placeholder='search every column'><span id='trials-shown' class='muted'></span></div>"
            f"<div class='tablewrap'><table id='trials'><thead><tr class='names'>{heads}</tr>"
            f"<tr class='filters'>{filters}</tr></thead><tbody>{''.join(body)}</tbody></table></div></section>")
