"""`autofit export OUT --format F`: the recommended configuration for another trainer."""

from __future__ import annotations

from pathlib import Path

from ..outputs import export_files, load_study


def export_command(out: str, fmt: str, storage: str | None, study_name: str | None) -> None:
    folder = Path(out)
    study = load_study(folder, storage, study_name)
    for path in export_files(study, folder, fmt):
        print(path)
