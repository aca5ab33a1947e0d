"""Checks on what a person or a file gives autofit, made before anything is created, and the masking of
secrets in what autofit prints. Each check raises AutofitError with one line (exit 2). The bounds are
in data/limits.yaml: wide enough for any real card, model and search, narrow enough that a typo or a
hostile value cannot exhaust memory or time."""

from __future__ import annotations

import fcntl
import glob
import hashlib
import math
import os
import sqlite3
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

from .errors import AutofitError

_SECRETS: set[str] = set()  # passwords seen in storage URLs, scrubbed from every printed error


@cache
def limits() -> dict[str, Any]:
    return yaml.safe_load(resources.files("autofit").joinpath("data/limits.yaml").read_text())


# --- numbers --------------------------------------------------------------------------------------------

def check_number(value: float | int | None, flag: str, low: float, high: float, low_open: bool = False) -> None:
    """`value` (None = unset) is finite and within [low, high] ((low, high] when `low_open`)."""
    if value is None:
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise AutofitError(f"{flag} must be a finite number, got {value}")
    if value > high or value < low or (low_open and value == low):
        bound = f"above {_num(low)}" if low_open else f"at least {_num(low)}"
        raise AutofitError(f"{flag} must be {bound} and at most {_num(high)}, got {_num(value)}")


def _num(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() and abs(value) < 1e18 else f"{value:g}"


def check_search_options(trials: int, timeout: float | None, seed: int | None, global_batch: int | None,
                         gpus: int, workers: int, probe_timeout: float | None,
                         screen_margin: float | None) -> None:
    """Bounds on `autofit search`'s numeric options."""
    lim = limits()
    check_number(trials, "--trials", 1, lim["trials_max"])
    check_number(timeout, "--timeout", 0, lim["seconds_max"], low_open=True)
    check_number(probe_timeout, "--probe-timeout", 0, lim["seconds_max"], low_open=True)
    check_number(screen_margin, "--screen-margin", 0, lim["screen_margin_max"])
    check_number(seed, "--seed", 0, 2**32 - 1)  # numpy's seed range
    check_number(global_batch, "--global-batch", 1, lim["global_batch_max"])
    check_number(gpus, "--gpus", 1, lim["gpus_max"])
    check_number(workers, "--workers", 1, lim["workers_max"])


def check_gpu_mem(total_bytes: float, text: str) -> None:
    """--gpu-mem within what a card can have."""
    lim = limits()
    gib = total_bytes / 2**30
    if not math.isfinite(gib) or not lim["gpu_mem_min_gib"] <= gib <= lim["gpu_mem_max_gib"]:
        raise AutofitError(f"--gpu-mem {short(text)} is outside {lim['gpu_mem_min_gib']:g} GiB .. "
                           f"{lim['gpu_mem_max_gib']:g} GiB (16 TiB)")


def check_pins_for_model(pins: dict[str, Any], config: dict[str, Any], space_values: dict[str, tuple]) -> None:
    """Values no model of this shape can take, pinned or in the space: a LoRA rank above the hidden size (the
    adapter would be larger than the layer it adapts, and the trace would count bytes no run could hold)."""
    rank, hidden = pins.get("lora_rank"), config.get("hidden_size")
    if not isinstance(hidden, int):
        return
    if isinstance(rank, int) and rank > hidden:
        raise AutofitError(f"--set lora_rank={rank}: above the model's hidden_size {hidden}")
    above = [r for r in space_values.get("lora_rank", ()) if r > hidden]
    if above:
        raise AutofitError(f"the space's lora_rank {above[0]} is above the model's hidden_size {hidden}")


# --- model config.json ----------------------------------------------------------------------------------

_POSITIVE_KEYS = ("num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads",
                  "num_key_value_heads", "vocab_size", "max_position_embeddings", "head_dim",
                  "num_experts", "num_local_experts", "n_routed_experts", "num_experts_per_tok",
                  "moe_intermediate_size")


_EXPERT_KEYS = ("num_experts", "num_local_experts", "n_routed_experts", "num_experts_per_tok")


def check_model_config_values(config: dict[str, Any], where: str) -> None:
    """Values no real model has: zero, negative or absurdly large sizes, key/value heads that do not divide
    the attention heads, more experts per token than experts. Keys a config leaves out (or sets to null)
    are not checked."""
    bounds = limits()["model_config_max"]
    for key in _POSITIVE_KEYS:
        value = config.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise AutofitError(f"{where}: {key} must be an integer, got {short(value)}")
        low = 0 if key in _EXPERT_KEYS else 1  # 0 experts: some dense configs of MoE families say so
        if value < low:
            raise AutofitError(f"{where}: {key} must be at least {low}, got {value}")
        high = bounds.get(key)
        if high is not None and value > high:
            raise AutofitError(f"{where}: {key} {value} is above {high}, more than any real model has")
    heads, kv = config.get("num_attention_heads"), config.get("num_key_value_heads")
    if heads and kv and heads % kv:
        raise AutofitError(f"{where}: num_key_value_heads {kv} does not divide num_attention_heads {heads}")
    per_token = config.get("num_experts_per_tok")
    experts = next((config[k] for k in ("num_experts", "num_local_experts", "n_routed_experts") if config.get(k)),
                   None)
    if per_token and experts and per_token > experts:
        raise AutofitError(f"{where}: num_experts_per_tok {per_token} is above the number of experts {experts}")


# --- storage URLs ---------------------------------------------------------------------------------------

_SCHEMES = ("sqlite", "postgresql", "mysql")  # with an optional +driver; journal:/// is autofit's own


def mask_url(url: str) -> str:
    """The URL with its password replaced by ***; the password is remembered so that `scrub` removes it from
    any text printed later (a driver's error message may quote it)."""
    try:
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
    except Exception:  # not a database URL (journal:///, a typo): nothing to mask
        return url
    if parsed.password:
        _SECRETS.add(str(parsed.password))
        return parsed.render_as_string(hide_password=True)
    return url


def scrub(text: str) -> str:
    """`text` with every password seen in a storage URL replaced by ***."""
    for secret in sorted(_SECRETS, key=len, reverse=True):
        text = text.replace(secret, "***")
        text = text.replace(quote(secret, safe=""), "***")
    return text


def sqlite_url(path: Path) -> str:
    """sqlite:/// URL for a file path, escaped so that '?', '#' and '%' in a folder name stay part of the path."""
    return "sqlite:///" + quote(str(path), safe="/")


def sqlite_path(url: str) -> Path | None:
    """The file a sqlite URL names, as sqlalchemy reads it; None for an in-memory database."""
    from sqlalchemy.engine import make_url

    database = make_url(url).database
    return None if database in (None, "", ":memory:") else Path(database)


def check_storage_url(url: str, reading: bool) -> None:
    """A storage URL autofit can use, checked before anything is opened or created. `reading` (report,
    export): the database must already exist and hold Optuna's tables; it is never created or migrated."""
    masked = mask_url(url)
    if url.startswith("journal:///"):
        _check_file_target(Path(url[len("journal:///"):]), masked, reading, sqlite=False)
        return
    try:
        from sqlalchemy.engine import make_url

        backend = make_url(url).get_backend_name()
    except Exception:
        backend = None
    if backend not in _SCHEMES:
        raise AutofitError(f"unknown storage {masked}: use sqlite:///FILE, journal:///FILE, postgresql:// or "
                           f"mysql://")
    if backend == "sqlite":
        path = sqlite_path(url)
        if path is None:
            if reading:
                raise AutofitError(f"storage {masked} is an empty in-memory database: no study to read")
            return
        _check_file_target(path, masked, reading, sqlite=True)


def _check_file_target(path: Path, masked: str, reading: bool, sqlite: bool) -> None:
    if path.exists():
        if not path.is_file():
            raise AutofitError(f"storage {masked}: {path} is not a regular file")
        if not os.access(path, os.R_OK if reading else os.R_OK | os.W_OK):
            raise AutofitError(f"storage {masked}: {path} is not {'readable' if reading else 'writable'}")
        if sqlite:
            _check_sqlite_file(path, masked)
    elif reading:
        raise AutofitError(f"storage {masked}: {path} does not exist")
    if not reading:
        folder = path.parent
        if not folder.is_dir():
            hint = "" if path.is_absolute() else " (a path after three slashes is relative to the working folder; " \
                                                "four slashes start an absolute one)"
            raise AutofitError(f"storage {masked}: folder {folder} does not exist{hint}")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise AutofitError(f"storage {masked}: folder {folder} is not writable")


def file_storage_lock_path(target: Path, study_name: str) -> Path:
    """The hidden lock file beside a SQLite or journal file that holds autofit's study lock (storage.study_lock):
    a search holds it while it creates the database and the study, and while it claims a trial."""
    return target.parent / f".{target.name}.{hashlib.sha1(study_name.encode()).hexdigest()[:8]}.lock"


def _sqlite_problem(path: Path) -> str | None:
    """Why an existing file cannot be used as an Optuna SQLite database (read-only look), or None."""
    with open(path, "rb") as handle:
        header = handle.read(16)
    if header != b"SQLite format 3\x00":
        what = "empty (0 bytes)" if not header else "not a SQLite database (corrupted or another kind of file)"
        return f"is {what}; autofit will not overwrite it"
    try:
        with sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True) as conn:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.Error as exc:
        return f"cannot be read as a database ({exc})"
    if not {"studies", "trials", "version_info"} <= tables:
        return "is a SQLite database but not an Optuna study; autofit will not change it"
    return None


def _waited_for_a_starting_search(path: Path) -> bool:
    """Wait until no autofit search holds a study lock beside `path`; True if there was one. A search that is
    creating the database holds its lock until the schema is there: a second worker started at the same moment
    would otherwise find an empty or half-made file and refuse it. Opening an existing lock file creates
    nothing."""
    locks = sorted(path.parent.glob(f".{glob.escape(path.name)}.*.lock"))
    for lock in locks:
        try:
            with open(lock) as handle:
                fcntl.flock(handle, fcntl.LOCK_SH)  # blocks while a search holds it exclusively
                fcntl.flock(handle, fcntl.LOCK_UN)
        except OSError:
            continue
    return bool(locks)


def _check_sqlite_file(path: Path, masked: str) -> None:
    """An existing sqlite file must be an Optuna database (read-only look; nothing is written)."""
    problem = _sqlite_problem(path)
    if problem is not None and _waited_for_a_starting_search(path):
        problem = _sqlite_problem(path)  # the search that held the lock has made it by now
    if problem is not None:
        raise AutofitError(f"storage {masked}: {path} {problem}")


def study_names_in(url: str) -> list[str]:
    """Study names of an existing sqlite study database (read-only), [] when there is none."""
    path = sqlite_path(url) if url.startswith("sqlite:") else None
    if path is None or not path.is_file():
        return []
    _check_sqlite_file(path, mask_url(url))
    with sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True) as conn:
        return [row[0] for row in conn.execute("SELECT study_name FROM studies")]


# --- text -----------------------------------------------------------------------------------------------

def short(value: Any, limit: int = 80) -> str:
    """repr of `value` cut to `limit` characters, for error lines about hostile input."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def one_line(message: str, limit: int = 2000) -> str:
    """An error message as the one line autofit prints: secrets scrubbed, newlines folded, length capped."""
    text = " ".join(scrub(message).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
