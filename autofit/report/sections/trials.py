"""7. Every trial in a sortable, filterable table."""

from __future__ import annotations

from typing import Any

import pandas as pd

from ..data import SHORT, ReportData, isnan, num, truthy
from ..render import render


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
    rec_number = data.rec_number
    rows: list[dict[str, Any]] = []
    for _, r in frame.iterrows():
        number = int(r["number"])
        cells: list[dict[str, Any]] = []
        for key, _, _ in columns:
            if key in ("peak_memory_gib", "tokens_per_s") or key in measured or key == "duration_s":
                cells.append(_figure_cell(key, r, measured))
            elif key in data.varying:
                value = r[key]
                numeric = num(value) if not isinstance(value, (bool, str)) else None
                cells.append({"figure": False, "v": None if numeric is None else repr(numeric), "text": value})
            else:  # number, state, mark, numbers, error: from the row's own fields
                cells.append({"figure": False})
        rows.append({
            "number": number, "state": str(r["state"]), "cells": cells,
            "estimated": bool(r["estimated"]) if r["estimated"] is not None and not isnan(r["estimated"]) else None,
            "classes": "rec" if number == rec_number else ("front" if number in front else ""),
            "mark": "★ recommended" if number == rec_number else ("◆ front" if number in front else ""),
            "probe": r["probe"] if isinstance(r["probe"], str) else "",
            "error": "" if r["error"] is None or isnan(r["error"]) else str(r["error"])})
    constant = ", ".join(f"{k}={v}" for k, v in data.constant.items())
    return render("trials.html.j2", rows=rows, columns=columns, counts=data.state_counts, constant=constant,
                  all_estimated=mark_all)


def _figure_cell(key: str, row: pd.Series, measured: list[str]) -> dict[str, Any]:
    """A number cell: its value for sorting (data-v), its text, and whether it is an estimate."""
    value = num(row[key])
    if key in ("peak_memory_gib", "tokens_per_s"):
        estimated = truthy(row["estimated"])
        text = "" if value is None else (f"{value:.3f}" if key == "peak_memory_gib" else f"{value:,.0f}")
    else:
        estimated = key == "predicted_peak_gib" and value is not None
        digits = 1 if key == "prediction_error_pct" else (2 if key == "duration_s" else 3)
        text = "" if value is None else f"{value:.{digits}f}"
    return {"figure": True, "v": None if value is None else repr(value), "text": text, "estimated": estimated}
