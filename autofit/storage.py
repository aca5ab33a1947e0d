"""Where a study lives, and how workers share it without stepping on each other.

`--storage` takes Optuna's RDB URLs (sqlite:///, postgresql://, mysql://) and journal files
(journal:///path/file.log). Several workers (processes, GPUs, machines) may run one study:
  * claiming a configuration happens under a study-wide lock (a file lock beside a sqlite database or
    journal file on one host; a PostgreSQL advisory lock or MySQL named lock across hosts), so two workers
    never claim the same configuration and the sampler sees every claim before it proposes;
  * a running trial carries its worker (host:pid) and a heartbeat time, refreshed in the background. A
    RUNNING trial whose worker died (kill -9, reboot, lost machine) is detected, marked lost, and its
    configuration retried once. Optuna's own heartbeat is RDB-only; this one works on every storage.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import socket
import threading
import time
from functools import lru_cache
from pathlib import Path

import optuna
from optuna.trial import TrialState

from .errors import AutofitError
from .trials import Outcome, TrialAttr, mark_outcome
from .validation import file_storage_lock_path, mask_url

HEARTBEAT_S = float(os.environ.get("AUTOFIT_HEARTBEAT_S", "5"))  # how often a worker says it is alive
GRACE_S = 6 * HEARTBEAT_S  # silence after which a running trial counts as lost


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _one_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _path_of(url: str, scheme: str) -> Path:
    if scheme == "sqlite:///":  # sqlalchemy's reading: percent-escapes decoded, "?..." is a query, not the path
        from .validation import sqlite_path

        return sqlite_path(url) or Path(":memory:")
    return Path(url[len(scheme):])


def make_storage(url: str) -> optuna.storages.BaseStorage:
    """An Optuna storage for `url`; AutofitError with one line when it cannot be opened."""
    try:
        if url.startswith("journal:///"):
            from optuna.storages.journal import JournalFileBackend

            path = _path_of(url, "journal:///")
            path.parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
    except (ImportError, ModuleNotFoundError) as exc:
        raise AutofitError(f"cannot open storage {mask_url(url)}: missing driver ({exc})") from None
    except Exception as exc:  # sqlalchemy / driver errors vary by backend
        raise AutofitError(f"cannot open storage {mask_url(url)}: {_one_line(exc)}") from None


@lru_cache(maxsize=8)
def _engine(url: str):
    import sqlalchemy

    return sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)


@contextlib.contextmanager
def _connection(url: str):
    """A connection for a lock, or one AutofitError line when the server or its driver is missing."""
    try:
        conn = _engine(url).connect()
    except Exception as exc:  # sqlalchemy / driver errors vary by backend
        raise AutofitError(f"cannot open storage {mask_url(url)}: {_one_line(exc)}") from None
    with conn:
        yield conn


@contextlib.contextmanager
def study_lock(url: str, study_name: str):
    """Hold the study-wide claim lock for `url` / `study_name`."""
    key = int.from_bytes(hashlib.sha1(f"autofit:{study_name}".encode()).digest()[:8], "big", signed=True)
    file_scheme = next((s for s in ("sqlite:///", "journal:///") if url.startswith(s)), None)
    target = _path_of(url, file_scheme) if file_scheme else None  # a hidden lock file beside the file
    if target is not None and str(target) != ":memory:":  # an in-memory database has no folder to lock in
        with open(file_storage_lock_path(target, study_name), "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
    elif url.startswith("postgresql"):
        import sqlalchemy

        with _connection(url) as conn:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
            try:
                yield
            finally:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
    elif url.startswith("mysql"):
        import sqlalchemy

        with _connection(url) as conn:
            conn.execute(sqlalchemy.text("SELECT GET_LOCK(:k, 600)"), {"k": f"autofit{key}"})
            try:
                yield
            finally:
                conn.execute(sqlalchemy.text("SELECT RELEASE_LOCK(:k)"), {"k": f"autofit{key}"})
    else:  # sqlite in memory and other URLs: one process only
        yield


class Heartbeat:
    """Refreshes a running trial's heartbeat attribute in the background until stopped."""

    def __init__(self, study: optuna.Study, trial_id: int):
        self._storage, self._trial_id = study._storage, trial_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="autofit-heartbeat", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self._storage.set_trial_user_attr(self._trial_id, TrialAttr.HEARTBEAT_AT, time.time())
            except Exception:  # a finished trial can no longer be written; a storage hiccup is retried next beat
                if self._stop.is_set():
                    return

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=HEARTBEAT_S + 5)


def _is_lost(trial: optuna.trial.FrozenTrial, now: float, claim_lock_held: bool = False) -> bool:
    if TrialAttr.WORKER not in trial.user_attrs:
        # created by study.ask() but its claim never finished (killed between ask and recording the worker).
        # Claims happen under the study lock, so one seen while holding the lock is an orphan; without the
        # lock, wait a grace period from its start in case a claim is still under way.
        started = trial.datetime_start.timestamp() if trial.datetime_start else 0.0
        return claim_lock_held or now - started > GRACE_S
    worker = trial.user_attrs.get(TrialAttr.WORKER, "")
    host, _, pid = worker.rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True  # its process is gone
        except PermissionError:
            pass
        if int(pid) == os.getpid():
            return False
    beat = trial.user_attrs.get(TrialAttr.HEARTBEAT_AT)
    return beat is not None and now - beat > GRACE_S


def reap_lost_trials(study: optuna.Study, claim_lock_held: bool = False) -> list[int]:
    """Mark RUNNING trials whose worker died as lost (FAIL in Optuna) and enqueue each configuration
    once more. A trial that never got a worker (its claimer died inside the claim) is lost at once when the
    caller holds the study's claim lock (`claim_lock_held`), else after GRACE_S from its start.
    Returns the numbers of the trials reaped."""
    now = time.time()
    reaped = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not _is_lost(trial, now, claim_lock_held):
            continue
        try:
            if not mark_outcome(study, trial, Outcome.LOST, TrialState.FAIL):
                continue  # another worker reaped it first
        except Exception:
            continue
        reaped.append(trial.number)
        if trial.user_attrs.get(TrialAttr.RETRY_OF) is None and trial.params:
            study.enqueue_trial(trial.params, user_attrs={TrialAttr.RETRY_OF: trial.number})
    return reaped
