"""The whole page: the sections in order, the navigation, the style and scripts, plotly inlined
(templates/page.html.j2)."""

from __future__ import annotations

import optuna
from plotly.offline import get_plotlyjs

from ..trials import StudyAttr
from .data import load_data
from .figures.collector import Figures
from .render import fragment, render
from .sections.breakdown import breakdown_section, time_section
from .sections.header import header_section
from .sections.history import history_section
from .sections.knobs import knobs_section
from .sections.pareto import pareto_section
from .sections.recommendation import recommendation_section
from .sections.requirements import requirements_section
from .sections.seq_len import seq_len_section
from .sections.trials import trials_section
from .sections.validation import validation_section
from .style import CSS, DRAW_JS, JS


def render_report(study: optuna.Study) -> str:
    """The whole page, as one self-contained HTML string."""
    data = load_data(study)
    figures = Figures()
    requirements = requirements_section(data)  # empty for studies searched without requirements
    sections = [
        recommendation_section(data),
        requirements,
        seq_len_section(data, figures),
        pareto_section(data, figures),
        breakdown_section(data, figures),
        time_section(data, figures),
        knobs_section(data, figures),
        history_section(data, figures),
        trials_section(data),
        validation_section(data, figures),
    ]
    return render("page.html.j2", model=data.attrs.get(StudyAttr.MODEL, "?"),
                  gpu_mem=data.attrs.get(StudyAttr.GPU_MEM, "?"),
                  css=fragment(CSS), header=fragment(header_section(data)), all_estimated=data.all_estimated,
                  with_requirements=bool(requirements), sections=[fragment(s) for s in sections],
                  study_name=study.study_name, trials=len(data.frame), figure_count=figures.count,
                  js=fragment(JS), plotly_js=fragment(get_plotlyjs()), draw_js=fragment(DRAW_JS))
