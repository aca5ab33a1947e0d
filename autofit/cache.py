"""Results kept on disk between runs: what depends only on its inputs, autofit's own code and the versions of the
libraries that computed it (a traced step, a model's parameter count, which attention kernels a model class runs).

A second `autofit estimate` of the same model and configuration (another --gpu-mem, another --gpu) or a rerun of a
search then reads them instead of importing torch, transformers and peft to compute them again.

- Where: $AUTOFIT_CACHE_DIR, else $XDG_CACHE_HOME/autofit, else ~/.cache/autofit. `AUTOFIT_CACHE=off` turns it
  off (nothing read, nothing written).
- Validity: every entry's name is a hash of its inputs and of a fingerprint of the running code: every file of the
  autofit package, the versions of torch, transformers, peft and bitsandbytes, Python's version and the machine's
  architecture. Changing any of them misses every older entry; there is nothing to invalidate by hand.
- Safety: entries are JSON (never pickle), written to a temporary file and renamed into place, so a kill or a
  full disk leaves no partial entry. An entry that cannot be read or parsed is a miss; a cache that cannot be
  written is skipped silently: it only saves time, it never changes a result.
- Size: past MAX_ENTRIES files the oldest (by modification time) are removed.
- Bad input changes nothing: a command that ends in exit status 2 removes the entries it added
  (`forget_this_run`, called by autofit.cli), and the folder if it made it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import tempfile
from collections.abc import Callable
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, TypeVar

DIR_ENV = "AUTOFIT_CACHE_DIR"
SWITCH_ENV = "AUTOFIT_CACHE"  # "off" (or 0 / false / no) turns the cache off
MAX_ENTRIES = 5000
KEEP_AFTER_PRUNE = 4000
_FORMAT = 1  # bump when the layout of an entry changes
# the libraries whose versions decide a traced step, a parameter count and a model class's attention flags
_LIBRARIES = ("torch", "transformers", "peft", "bitsandbytes")
_SOURCE_SUFFIXES = (".py", ".yaml", ".yml", ".json")
T = TypeVar("T")


# what this process added (entries, and the folder when it made it), so that a bad-input exit can take them back
_ADDED: list[Path] = []


def enabled() -> bool:
    return os.environ.get(SWITCH_ENV, "on").strip().lower() not in ("off", "0", "false", "no")


def cache_dir() -> Path:
    explicit = os.environ.get(DIR_ENV)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "autofit"


@cache
def fingerprint() -> str:
    """A hash of everything besides its inputs that a cached result depends on (see the module docstring)."""
    digest = hashlib.sha256(f"format {_FORMAT}".encode())
    package = Path(__file__).resolve().parent
    for path in sorted(package.rglob("*")):
        if path.suffix in _SOURCE_SUFFIXES and "__pycache__" not in path.parts and path.is_file():
            digest.update(str(path.relative_to(package)).encode())
            digest.update(path.read_bytes())
    for name in _LIBRARIES:
        try:
            digest.update(f"{name}=={version(name)}".encode())
        except PackageNotFoundError:
            digest.update(f"{name} missing".encode())
    digest.update(f"{sys.version_info[:3]} {platform.machine()}".encode())
    return digest.hexdigest()


def _entry(namespace: str, key: Any) -> Path:
    name = hashlib.sha256(json.dumps([fingerprint(), namespace, key], sort_keys=True).encode()).hexdigest()
    return cache_dir() / f"{namespace}-{name}.json"


def get(namespace: str, key: Any) -> Any | None:
    """The value stored under (namespace, key) by this code and these libraries, or None."""
    if not enabled():
        return None
    try:
        return json.loads(_entry(namespace, key).read_text())["value"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None


def get_or_compute(namespace: str, key: Any, compute: Callable[[], T], valid: Callable[[Any], bool]) -> T:
    """The stored value when there is one that `valid` accepts, else `compute()`, stored for the next run."""
    stored = get(namespace, key)
    if stored is not None and valid(stored):
        return stored
    value = compute()
    put(namespace, key, value)
    return value


def put(namespace: str, key: Any, value: Any) -> None:
    """Store a JSON-ready `value` under (namespace, key); silently nothing when the cache cannot be written."""
    if not enabled():
        return
    path = _entry(namespace, key)
    try:
        if not path.parent.is_dir():
            path.parent.mkdir(parents=True, mode=0o700)
            _ADDED.append(path.parent)
        new = not path.exists()
        with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=".tmp-", suffix=".json",
                                         delete=False) as handle:
            temporary = Path(handle.name)
            try:
                json.dump({"namespace": namespace, "value": value}, handle)
            except BaseException:
                handle.close()
                temporary.unlink(missing_ok=True)
                raise
        os.replace(temporary, path)
        if new:
            _ADDED.append(path)
        _prune(path.parent)
    except (OSError, TypeError, ValueError):
        return


def begin_run() -> None:
    """Start counting what this command adds (autofit.cli runs one command per call of main)."""
    _ADDED.clear()


def forget_this_run() -> None:
    """Remove what this command added to the cache (newest first, the folder last if it made it and it is
    empty): a command that ends in bad input leaves nothing behind."""
    while _ADDED:
        path = _ADDED.pop()
        try:
            if path.is_dir():
                path.rmdir()
            else:
                path.unlink(missing_ok=True)
        except OSError:  # another process's entries are in the folder now, or it is gone: leave it
            pass


def _prune(directory: Path) -> None:
    entries = [p for p in directory.glob("*.json") if not p.name.startswith(".tmp-")]
    if len(entries) <= MAX_ENTRIES:
        return
    by_age = sorted(entries, key=lambda p: p.stat().st_mtime)
    for path in by_age[: len(by_age) - KEEP_AFTER_PRUNE]:
        path.unlink(missing_ok=True)
