"""Shared helpers: run the `autofit` command line, in-process (fast) or in a real subprocess (the user's view).

Most CLI tests call `run_cli`, which runs `autofit.cli.main` in this process with sys.argv, the working folder
and the standard streams swapped, and returns what a subprocess would (exit status, stdout, stderr): each
subprocess would pay 5-10 s of torch/transformers imports on a 2-core machine. A few tests keep real processes
(`run_cli_subprocess`: the `autofit` entry point, `python -m autofit`, signals and kills)."""

import importlib.util
import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import traceback
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

TINY_ARGS = ["--model", "glm-tiny", "--gpu-mem", "1.2GB"]
TINY_SEARCH_ARGS = [*TINY_ARGS, "--trials", "14", "--seed", "1"]


def load_script(relative_path: str):
    """A bench/ or tools/ script loaded as a module (they are scripts, not a package), registered in sys.modules
    under its file name, as dataclasses need while the module runs."""
    path = ROOT / relative_path
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def read_only(url: str) -> str:
    """`url`, opening a SQLite study read-only (other storages unchanged). Tests that poll a study while a search
    may be starting read it this way: a read-write reader creates the schema when it is missing, racing the
    search's own creation (seen under pytest-xdist: the search failed and removed its new folder)."""
    if url.startswith("sqlite:///"):
        return f"sqlite:///file:{url[len('sqlite:///'):]}?mode=ro&uri=true"
    return url


def run_cli_subprocess(*args, cwd=None, timeout=600):
    """Run `python -m autofit ARGS` in a child process; returns the CompletedProcess (text)."""
    env = {**os.environ, "COLUMNS": "200", "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "autofit", *map(str, args)], cwd=cwd or ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def run_cli(*args, cwd=None, timeout=None):
    """Run `autofit ARGS` in this process; returns a CompletedProcess as `run_cli_subprocess` does.

    An exception that escapes `main` is what a child process would die of: its traceback goes to stderr with
    exit status 1, as Python prints it. `timeout` is accepted for the subprocess signature; pytest-timeout
    bounds the test instead."""
    from autofit import cli

    argv = ["autofit", *map(str, args)]
    out, err = io.StringIO(), io.StringIO()
    saved_argv, saved_cwd, saved_term = sys.argv, os.getcwd(), signal.getsignal(signal.SIGTERM)
    saved_columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "200"  # as the subprocess runs got it: rich sizes its tables from it
    try:
        sys.argv = argv
        os.chdir(cwd or ROOT)
        with redirect_stdout(out), redirect_stderr(err):
            try:
                cli.main()
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
                if isinstance(exc.code, str):
                    print(exc.code, file=sys.stderr)
            except Exception:  # noqa: BLE001 - an uncaught error: what the interpreter prints, exit 1
                traceback.print_exc()
                code = 1
    finally:
        sys.argv = saved_argv
        os.chdir(saved_cwd)
        signal.signal(signal.SIGTERM, saved_term)  # `search` installs its own SIGTERM handler
        if saved_columns is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = saved_columns
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


# Where tmp_path lives. The studies tests create are SQLite files, and SQLite syncs the disk on every commit
# (an Optuna trial is ~30 commits): on this project's 2-core machine a 20-trial search took 25 s with its study
# under /tmp (a disk) and 4.7 s under /dev/shm (memory), the same search. So tests keep their temporary folders
# in a memory file system when there is one, unless the run names its own (--basetemp or PYTEST_DEBUG_TEMPROOT,
# pytest's own setting); what is tested (the files, the studies' contents) is the same on either.
MEMORY_TEMP_ROOT = Path("/dev/shm")


# The on-disk cache of traces (autofit/cache.py) for this run: a fresh folder that every test, every xdist worker
# (they inherit the environment) and every CLI subprocess shares, so a trace one test computed is read by the
# next, as a user's second command reads it. Never the user's own ~/.cache/autofit; removed at the end.
_RUN_CACHE: list[str] = []


def pytest_configure(config):
    if config.option.basetemp is None and "PYTEST_DEBUG_TEMPROOT" not in os.environ \
            and MEMORY_TEMP_ROOT.is_dir() and os.access(MEMORY_TEMP_ROOT, os.W_OK | os.X_OK) \
            and shutil.disk_usage(MEMORY_TEMP_ROOT).free > 2 * 2**30:
        os.environ["PYTEST_DEBUG_TEMPROOT"] = str(MEMORY_TEMP_ROOT)
    if "PYTEST_XDIST_WORKER" not in os.environ:  # the controller (or a run without xdist) makes it
        from autofit import cache

        folder = tempfile.mkdtemp(prefix="autofit-test-cache-", dir=os.environ.get("PYTEST_DEBUG_TEMPROOT"))
        _RUN_CACHE.append(folder)
        os.environ[cache.DIR_ENV] = folder


def pytest_unconfigure(config):
    while _RUN_CACHE:
        shutil.rmtree(_RUN_CACHE.pop(), ignore_errors=True)


def pytest_xdist_auto_num_workers(config):
    """`-n auto` (pyproject's addopts): one pytest-xdist worker per core this process may run on, at most 4. Each
    worker holds its own torch, transformers and session search (1-2 GB), and many workers would only share
    the same memory bandwidth."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, 4))


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture(scope="session")
def tiny_search_outputs(tmp_path_factory):
    """One 14-trial search of glm-tiny at 1.2GB (trace probe), shared by the tests that only read its outputs.
    Returns (folder, CompletedProcess). Tests that write into a search folder take `tiny_search_copy`."""
    out = tmp_path_factory.mktemp("tiny-search") / "out"
    proc = run_cli("search", *TINY_SEARCH_ARGS, "--out", out)
    assert proc.returncode == 0, proc.stderr
    return out, proc


@pytest.fixture
def tiny_search_copy(tiny_search_outputs, tmp_path):
    """A private copy of the shared tiny search's folder (its study.db included), free to change."""
    out, proc = tiny_search_outputs
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    return copy, proc
