"""The user's requirements: what was required (and from where), why the recommendation was chosen, and the
concessions (what fits, or is gained, by giving a requirement up), from the study's stored advice
(autofit/advice.py)."""

from __future__ import annotations

from ...advice import stored_concessions, stored_requirements
from ...requirements import GLOBAL_BATCH_FREE
from ..data import ReportData
from ..render import render


def requirements_section(data: ReportData) -> str:
    req = stored_requirements(data.attrs)
    if req is None:
        return ""
    shown = [(k, v, req.sources[k] + (f"; conceded: {req.conceded[k]} used instead" if k in req.conceded else ""))
             for k, v in req.values.items()]
    shown.append(("global batch", GLOBAL_BATCH_FREE if req.global_batch is None else req.global_batch,
                  req.global_batch_source))
    return render("requirements.html.j2", req=req, shown=shown, reason=data.rec.reason if data.rec is not None else "",
                  concessions=stored_concessions(data.attrs))
