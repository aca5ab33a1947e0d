"""Files a search writes into OUT, always from the stored study and always atomically (temp file + rename)."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

from . import exports
from .documents import export_context, render_best_config, write_back_outputs
from .errors import AutofitError
from .results import pareto_frame, recommend, trials_frame
from .validation import check_storage_url, mask_url, sqlite_url

if TYPE_CHECKING:
    import pandas as pd

def _process_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# read once, at import (os.umask can only be read by setting it, which is not safe once threads run)
_FILE_MODE = 0o666 & ~_process_umask()


def atomic_write(path: Path, text: str) -> None:
    """Write `text` to `path` so that readers see the old file or the whole new one, never a part. The file gets
    the mode a plain open() would give it: an existing file's, else the umask's (mkstemp's temporary is private)."""
    write_together(path.parent, {path.name: text})


def _write_temp(path: Path, text: str) -> str:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, stat.S_IMODE(path.stat().st_mode) if path.exists() else _FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def write_together(folder: Path, files: dict[str, str]) -> list[Path]:
    """Write several files into `folder` all or none: each goes to a temporary first, and only when every one
    is complete are they renamed into place. A full disk or a read-only folder leaves the previous files as
    they were (never new CSVs beside a stale report) and is one AutofitError line."""
    temps: list[tuple[str, Path]] = []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            temps.append((_write_temp(folder / name, text), folder / name))
    except BaseException as exc:
        for tmp, _ in temps:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise AutofitError(f"cannot write {', '.join(files)} in {folder}: {exc.strerror or exc}; nothing there "
                               f"was changed (the study is intact: rerun autofit report once it can be written)") \
                from None
        raise
    for tmp, path in temps:
        os.replace(tmp, path)
    return [path for _, path in temps]


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _formula_safe(cell: Any) -> Any:
    """A text cell a spreadsheet would run as a formula (starts with = + - @, tab or CR) gets a leading
    apostrophe; numbers, including negative ones written as text, stay as they are."""
    if not isinstance(cell, str) or not cell.startswith(_FORMULA_START):
        return cell
    try:
        float(cell)
        return cell
    except ValueError:
        return "'" + cell


def spreadsheet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with its text cells neutralised for spreadsheets (CSV injection)."""
    import pandas as pd

    frame = frame.copy()
    for column in frame.columns:
        if pd.api.types.is_object_dtype(frame[column]) or pd.api.types.is_string_dtype(frame[column]):
            frame[column] = frame[column].map(_formula_safe)
    return frame


def ensure_writable_dir(out: Path) -> bool:
    """Check that OUT can be created and written before anything runs. Returns whether it already existed."""
    existed = out.exists()
    if existed and not out.is_dir():
        raise AutofitError(f"--out {out} exists and is not a folder")
    probe = out if existed else next((p for p in out.parents if p.exists()), Path("."))
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise AutofitError(f"--out {out} is not writable")
    return existed


def write_outputs(study: optuna.Study, out: Path) -> list[Path]:
    """trials.csv, pareto.csv, report.html and, when a configuration fits, best-config.yaml and the
    trainer files (llamafactory.yaml, ds_config.json when ZeRO is used). Returns the paths written."""
    from .advice import seq_len_csv  # the probes (advice) and plotly (report): loaded only when writing
    from .report import render_report

    trials = trials_frame(study)
    files = {"trials.csv": spreadsheet_safe(trials).to_csv(index=False),
             "pareto.csv": spreadsheet_safe(pareto_frame(study, trials)).to_csv(index=False)}
    curve_csv = seq_len_csv(study)
    if curve_csv is not None:
        files["seq-len.csv"] = curve_csv
    rec = recommend(study)
    if rec is not None:
        files["best-config.yaml"] = render_best_config(study, rec)
        files.update(exports.render("llamafactory", export_context(study, rec)))
        files.update(write_back_outputs(study, rec, out))  # search --from FILE: the user's file, updated
    files["report.html"] = render_report(study)
    return write_together(out, files)


def export_files(study: optuna.Study, out: Path, fmt: str) -> list[Path]:
    """Write the recommended configuration in `fmt` into OUT."""
    rec = recommend(study)
    if rec is None:
        raise AutofitError(f"the study in {out} has no configuration that fits the budget; nothing to export")
    try:
        files = exports.render(fmt, export_context(study, rec))
    except ValueError as exc:
        raise AutofitError(str(exc)) from None
    return write_together(out, files)


def load_study(out: Path, storage: str | None = None, study_name: str | None = None) -> optuna.Study:
    """The study of a search folder (default storage sqlite:///OUT/study.db, its only study). Read only: a
    database that is missing, empty, corrupted or not Optuna's is refused, never created or migrated."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if storage is None:
        db = out / "study.db"
        if not db.exists():
            raise AutofitError(f"{out} holds no study (no study.db); run autofit search --out {out} first")
        storage = sqlite_url(db)
    check_storage_url(storage, reading=True)
    masked = mask_url(storage)
    backend: optuna.storages.BaseStorage
    try:
        if storage.startswith("journal:///"):
            from optuna.storages.journal import JournalFileBackend

            backend = optuna.storages.JournalStorage(JournalFileBackend(storage[len("journal:///"):]))
        else:  # no create_all: a database without Optuna's tables stays as it is
            backend = optuna.storages.RDBStorage(storage, skip_table_creation=True)
        if study_name is None:
            names = [s.study_name for s in backend.get_all_studies()]
            if len(names) != 1:
                raise AutofitError(f"{masked} holds {len(names)} studies; name one with --study-name")
            study_name = names[0]
        return optuna.load_study(study_name=study_name, storage=backend)
    except AutofitError:
        raise
    except KeyError:
        raise AutofitError(f"no study {study_name!r} in {masked}") from None
    except Exception as exc:  # driver, schema-version and file errors vary by backend
        cause: BaseException = exc
        while cause.__cause__ is not None:  # Optuna wraps the driver's error, which says what went wrong
            cause = cause.__cause__
        first = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        raise AutofitError(f"cannot open storage {masked}: {first}") from None
