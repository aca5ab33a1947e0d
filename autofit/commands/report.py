"""`autofit report OUT`: rebuild report.html from the stored study."""

from __future__ import annotations

from pathlib import Path

from ..outputs import atomic_write, load_study
from ..report import render_report


def report_command(out: str, storage: str | None, study_name: str | None) -> None:
    folder = Path(out)
    study = load_study(folder, storage, study_name)
    atomic_write(folder / "report.html", render_report(study))
    print(folder / "report.html")
