"""Files a search writes into OUT, always from the stored study and always atomically (temp file + rename)."""

from __future__ import annotations

import json
import os
import stat
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import optuna
import yaml

from . import exports
from .errors import AutofitError
from .results import Recommendation, pareto_frame, recommend, trials_frame

VERSIONED = ("autofit", "torch", "transformers", "peft", "bitsandbytes", "deepspeed", "optuna")


def library_versions() -> dict[str, str]:
    found = {}
    for name in VERSIONED:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def _process_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# read once, at import (os.umask can only be read by setting it, which is not safe once threads run)
_FILE_MODE = 0o666 & ~_process_umask()


def atomic_write(path: Path, text: str) -> None:
    """Write `text` to `path` so that readers see the old file or the whole new one, never a part. The file gets
    the mode a plain open() would give it: an existing file's, else the umask's (mkstemp's temporary is private)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, stat.S_IMODE(path.stat().st_mode) if path.exists() else _FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def ensure_writable_dir(out: Path) -> bool:
    """Check that OUT can be created and written before anything runs. Returns whether it already existed."""
    existed = out.exists()
    if existed and not out.is_dir():
        raise AutofitError(f"--out {out} exists and is not a folder")
    probe = out if existed else next((p for p in out.parents if p.exists()), Path("."))
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise AutofitError(f"--out {out} is not writable")
    return existed


def export_context(study: optuna.Study, rec: Recommendation) -> "exports.ExportContext":
    attrs = study.user_attrs
    return exports.ExportContext(
        model_ref=attrs["model_ref"], model_name=attrs["model"], template=attrs.get("template"),
        config=rec.config, peak_memory_gib=rec.peak_memory_gib, tokens_per_s=rec.tokens_per_s, probe=rec.probe,
        estimated=rec.estimated, gpu_mem=attrs["gpu_mem"], usable_budget_gib=attrs["usable_budget_gib"],
        gpus=attrs.get("gpus", 1))


def best_config_document(study: optuna.Study, rec: Recommendation) -> dict[str, Any]:
    from .advice import advice_document

    attrs = study.user_attrs
    return {
        "model": attrs["model"],
        "model_ref": attrs["model_ref"],
        "gpu_mem": attrs["gpu_mem"],
        "usable_budget_gib": round(attrs["usable_budget_gib"], 3),
        "probe": rec.probe,
        "estimated": rec.estimated,
        "gpu": attrs["gpu"],
        "gpus": attrs.get("gpus", 1),
        "trial": rec.trial.number,
        "config": rec.config,
        "metrics": {"peak_memory_gib": round(rec.peak_memory_gib, 3), "tokens_per_s": round(rec.tokens_per_s, 1)},
        "breakdown_gib": {k: round(v, 3) for k, v in rec.breakdown_gib.items()},
        **advice_document(study, rec),  # requirements, why, concessions, longest seq_len (autofit/advice.py)
        "versions": library_versions(),
    }


def render_best_config(study: optuna.Study, rec: Recommendation) -> str:
    label = "estimated by the trace probe (fake tensors, roofline throughput)" if rec.estimated else "measured"
    what = ("the simplest of the fastest configurations that meet the requirements and fit"
            if "requirements" in study.user_attrs else "the fastest configuration that fits")
    header = (f"# autofit recommendation: {what} {study.user_attrs['gpu_mem']}\n"
              f"# peak memory and tokens/s are {label}\n")
    return header + yaml.safe_dump(best_config_document(study, rec), sort_keys=False)


def write_outputs(study: optuna.Study, out: Path) -> list[Path]:
    """trials.csv, pareto.csv, report.html and, when a configuration fits, best-config.yaml and the
    trainer files (llamafactory.yaml, ds_config.json when ZeRO is used). Returns the paths written."""
    from .advice import seq_len_csv, write_back_outputs
    from .report import render_report

    written: list[Path] = []

    def put(name: str, text: str) -> None:
        atomic_write(out / name, text)
        if out / name not in written:
            written.append(out / name)

    put("trials.csv", trials_frame(study).to_csv(index=False))
    put("pareto.csv", pareto_frame(study).to_csv(index=False))
    curve_csv = seq_len_csv(study)
    if curve_csv is not None:
        put("seq-len.csv", curve_csv)
    rec = recommend(study)
    if rec is not None:
        put("best-config.yaml", render_best_config(study, rec))
        for name, text in exports.render("llamafactory", export_context(study, rec)).items():
            put(name, text)
        for name, text in write_back_outputs(study, out).items():  # search --from FILE: the user's file, updated
            put(name, text)
    put("report.html", render_report(study))
    return written


def export_files(study: optuna.Study, out: Path, fmt: str) -> list[Path]:
    """Write the recommended configuration in `fmt` into OUT."""
    rec = recommend(study)
    if rec is None:
        raise AutofitError(f"the study in {out} has no configuration that fits the budget; nothing to export")
    try:
        files = exports.render(fmt, export_context(study, rec))
    except ValueError as exc:
        raise AutofitError(str(exc)) from None
    paths = []
    for name, text in files.items():
        atomic_write(out / name, text)
        paths.append(out / name)
    return paths


def load_study(out: Path, storage: str | None = None, study_name: str | None = None) -> optuna.Study:
    """The study of a search folder (default storage sqlite:///OUT/study.db, its only study)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if storage is None:
        db = out / "study.db"
        if not db.is_file():
            raise AutofitError(f"{out} holds no study (no study.db); run autofit search --out {out} first")
        storage = f"sqlite:///{db}"
    try:
        if study_name is None:
            names = optuna.get_all_study_names(storage)
            if len(names) != 1:
                raise AutofitError(f"{storage} holds {len(names)} studies; name one with --study-name")
            study_name = names[0]
        return optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        raise AutofitError(f"no study {study_name!r} in {storage}") from None
    except (ValueError, ImportError) as exc:
        raise AutofitError(f"cannot open storage {storage}: {exc}") from None


def dumps_json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"
