"""The whole page: the sections in order, the navigation, the style and scripts, plotly inlined."""

from __future__ import annotations

import optuna
from plotly.offline import get_plotlyjs

from .data import load_data
from .figures.collector import Figures
from .markup import badge, esc, note
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
    a = data.attrs
    sections = [
        header_section(data),
        recommendation_section(data),
        requirements_section(data),
        seq_len_section(data, figures),
        pareto_section(data, figures),
        breakdown_section(data, figures),
        time_section(data, figures),
        knobs_section(data, figures),
        history_section(data, figures),
        trials_section(data),
        validation_section(data, figures),
    ]
    advice_nav = ("<a href='#requirements'>Requirements</a><a href='#seq-len'>Sequence length</a>"
                  if sections[2] else "")  # studies searched with requirements (sections/requirements.py)
    nav = ("<nav><a href='#recommended'>Recommended</a>" + advice_nav + "<a href='#pareto'>Pareto front</a>"
           "<a href='#breakdown'>Memory breakdown</a><a href='#time'>Time breakdown</a>"
           "<a href='#knobs'>Knob effects</a><a href='#history'>History</a>"
           "<a href='#trials-section'>Every trial</a><a href='#validation'>Predicted vs measured</a></nav>")
    estimated_banner = ""
    if data.all_estimated:
        estimated_banner = note(f"{badge(True)} Every memory and throughput figure in this report comes from the "
                                 "<b>trace probe</b>: the real model's training step on fake tensors, with a "
                                 "performance model of the card for tokens/s. They are estimates, not measurements.")
    title = f"autofit: {a.get('model', '?')} on {a.get('gpu_mem', '?')}"
    return "".join([
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{esc(title)}</title><style>{CSS}</style>",
        "</head><body><main>",
        sections[0], estimated_banner, nav, *sections[1:],
        f"<footer>autofit report, built from study {esc(study.study_name)}: {len(data.frame)} trials, "
        f"{figures.count} figures. Plotly is inlined: this page needs no network.</footer>",
        f"</main><script>{JS}</script><script type='text/javascript'>{get_plotlyjs()}</script>",
        f"<script>{DRAW_JS}</script></body></html>",
    ])
