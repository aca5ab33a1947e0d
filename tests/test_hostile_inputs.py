"""Hostile and mistyped input (issue 14): every case is one line on stderr, exit status 2, no traceback, and
nothing created or changed. Most cases run in-process (autofit.cli.main with sys.argv patched) to keep the
suite fast; the kill and signal cases need real processes and have timeouts, so a regression fails instead of
hanging."""

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest

from autofit import cli
from autofit.errors import AutofitError
from autofit.trials import Outcome, TrialAttr, outcome_of

from conftest import read_only

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
PRESETS = ROOT / "autofit" / "data" / "models"
TINY = ["--model", "glm-tiny", "--gpu-mem", "2GB"]
SECRET = "s3cret-pw"


def snapshot(folder: Path) -> dict:
    """Every file and folder under `folder` with its size, mtime and content hash."""
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            stat = path.stat()
            found[str(path)] = (stat.st_size, stat.st_mtime_ns, hashlib.sha1(path.read_bytes()).hexdigest())
        else:
            found[str(path)] = "dir"
    return found


@pytest.fixture
def run_main(tmp_path, monkeypatch, capsys):
    """Run `autofit ARGS` in-process from tmp_path; returns (exit status, stdout, stderr)."""
    monkeypatch.chdir(tmp_path)
    saved = signal.getsignal(signal.SIGTERM)

    def run(*args):
        monkeypatch.setattr(sys, "argv", ["autofit", *map(str, args)])
        try:
            cli.main()
            code = 0
        except SystemExit as exc:
            code = exc.code
        finally:
            signal.signal(signal.SIGTERM, saved)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def _config(**changes) -> dict:
    config = json.loads((PRESETS / "glm-tiny.json").read_text())["config"]
    config.update(changes)
    return {k: v for k, v in config.items() if v is not None}


def _model_dir(tmp: Path, **changes) -> Path:
    folder = tmp / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(_config(**changes)))
    return folder


def _space(tmp: Path, text: str | bytes) -> Path:
    path = tmp / "space.yaml"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


ALIAS_BOMB = "knobs:\n  a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"  {chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8))


def _study_db(path: Path, name: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.create_study(study_name=name, storage=f"sqlite:///{path}")
    return path


def _file(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# (case id, function of tmp_path returning the command line). Each must fail with one line and exit 2,
# leaving tmp_path exactly as the setup made it.
CASES = [
    ("gpu-mem-400-digits", lambda t: ["search", "--model", "glm-tiny", "--gpu-mem", "9" * 400 + "GB"]),
    ("gpu-mem-1e30", lambda t: ["search", "--model", "glm-tiny", "--gpu-mem", "1e30GB"]),
    ("gpu-mem-above-16TiB", lambda t: ["search", "--model", "glm-tiny", "--gpu-mem", "100TB"]),
    ("gpu-mem-below-256MiB", lambda t: ["search", "--model", "glm-tiny", "--gpu-mem", "128MiB"]),
    ("estimate-gpu-mem-digits", lambda t: ["estimate", "--model", "glm-tiny", "--gpu-mem", "9" * 400]),
    ("timeout-negative", lambda t: ["search", *TINY, "--timeout", "-5"]),
    ("timeout-nan", lambda t: ["search", *TINY, "--timeout", "nan"]),
    ("timeout-inf", lambda t: ["search", *TINY, "--timeout", "inf"]),
    ("probe-timeout-zero", lambda t: ["search", *TINY, "--probe-timeout", "0"]),
    ("probe-timeout-nan", lambda t: ["search", *TINY, "--probe-timeout", "nan"]),
    ("screen-margin-nan", lambda t: ["search", *TINY, "--screen-margin", "nan"]),
    ("headroom-nan", lambda t: ["search", *TINY, "--headroom", "nan"]),
    ("seed-negative", lambda t: ["search", *TINY, "--seed", "-1"]),
    ("workers-100000", lambda t: ["search", *TINY, "--workers", "100000"]),
    ("global-batch-huge", lambda t: ["search", *TINY, "--global-batch", str(2**40)]),
    ("set-lora-rank-1e9", lambda t: ["search", *TINY, "--set", "lora_rank=1000000000"]),
    ("set-lora-rank-above-hidden", lambda t: ["search", *TINY, "--set", "lora_rank=128"]),
    ("estimate-lora-rank-above-hidden", lambda t: ["estimate", *TINY, "--set", "lora_rank=65536"]),
    ("space-lora-rank-above-hidden", lambda t: ["search", *TINY, "--space", _space(
        t, "knobs:\n  lora_rank: {choices: [8, 65536], default: 8}\n")]),
    ("estimate-lora-rank-1e9", lambda t: ["estimate", *TINY, "--set", "lora_rank=1000000000"]),
    ("set-seq-len-overflow", lambda t: ["search", *TINY, "--set", "seq_len=" + "9" * 30]),
    ("set-batch-overflow", lambda t: ["search", *TINY, "--set", "per_device_train_batch_size=" + "9" * 5000]),
    ("set-seq-len-float", lambda t: ["search", *TINY, "--set", "seq_len=1e400"]),
    ("model-mistyped-path", lambda t: ["search", "--model", "./no/such/dir", "--gpu-mem", "24GB"]),
    ("model-mistyped-abs-path", lambda t: ["estimate", "--model", f"{t}/no/config.json", "--gpu-mem", "24GB"]),
    ("config-zero-layers", lambda t: ["search", "--model", _model_dir(t, num_hidden_layers=0), "--gpu-mem", "2GB"]),
    ("config-negative-layers", lambda t: ["search", "--model", _model_dir(t, num_hidden_layers=-3), "--gpu-mem", "2GB"]),
    ("config-100000-layers", lambda t: ["search", "--model", _model_dir(t, num_hidden_layers=100000), "--gpu-mem", "2GB"]),
    ("config-zero-hidden", lambda t: ["estimate", "--model", _model_dir(t, hidden_size=0), "--gpu-mem", "2GB"]),
    ("config-negative-intermediate", lambda t: ["search", "--model", _model_dir(t, intermediate_size=-5),
                                                "--gpu-mem", "2GB"]),
    ("config-kv-heads-not-dividing", lambda t: ["search", "--model", _model_dir(t, num_key_value_heads=3),
                                                "--gpu-mem", "2GB"]),
    ("config-max-positions-zero", lambda t: ["search", "--model", _model_dir(t, max_position_embeddings=0),
                                             "--gpu-mem", "2GB"]),
    ("config-hidden-as-text", lambda t: ["search", "--model", _model_dir(t, hidden_size="64"), "--gpu-mem", "2GB"]),
    ("config-more-experts-per-token", lambda t: ["search", "--model", _model_dir(
        t, model_type="mixtral", num_local_experts=4, num_experts_per_tok=8), "--gpu-mem", "2GB"]),
    ("config-deep-nesting", lambda t: ["search", "--model", _file(t / "m" / "config.json", b"[" * 100000),
                                       "--gpu-mem", "2GB"]),
    ("config-layers-inf", lambda t: ["search", "--model", _file(t / "m" / "config.json", json.dumps(
        _config()).replace('"num_hidden_layers": 2', '"num_hidden_layers": 1e400').encode()), "--gpu-mem", "2GB"]),
    ("space-step-true", lambda t: ["search", *TINY, "--space", _space(
        t, "knobs:\n  seq_len: {low: 64, high: 256, step: true, default: 64}\n")]),
    ("space-alias-bomb", lambda t: ["search", *TINY, "--space", _space(t, ALIAS_BOMB)]),
    ("space-dev-zero", lambda t: ["search", *TINY, "--space", "/dev/zero"]),
    ("space-deep-nesting", lambda t: ["search", *TINY, "--space", _space(t, "knobs: " + "[" * 50000 + "]" * 50000)]),
    ("space-huge-range", lambda t: ["search", *TINY, "--space", _space(
        t, "knobs:\n  lora_rank: {low: 1, high: 1000000000000, default: 8}\n")]),
    ("space-range-too-many-values", lambda t: ["search", *TINY, "--space", _space(
        t, "knobs:\n  seq_len: {low: 8, high: 1000000, default: 64}\n")]),
    ("space-too-large-file", lambda t: ["search", *TINY, "--space", _space(t, "#" * (2 << 20))]),
    ("space-is-a-folder", lambda t: ["search", *TINY, "--space", t]),
    ("space-not-utf8", lambda t: ["search", *TINY, "--space", _space(t, b"\xff\xfe knobs")]),
    ("storage-folder-missing", lambda t: ["search", *TINY, "--out", t / "o", "--storage",
                                          f"sqlite:///{t}/missing/study.db"]),
    ("storage-journal-folder-missing", lambda t: ["search", *TINY, "--out", t / "o", "--storage",
                                                  f"journal:///{t}/missing/study.log"]),
    ("storage-unknown-scheme", lambda t: ["search", *TINY, "--out", t / "o", "--storage", "foo://bar"]),
    ("storage-postgres-unreachable", lambda t: ["search", *TINY, "--out", t / "o", "--storage",
                                                f"postgresql://autofit:{SECRET}@127.0.0.1:1/autofit"]),
    ("search-corrupted-db", lambda t: ["search", *TINY, "--out", _file(t / "o" / "study.db", b"garbage" * 100).parent]),
    ("search-zero-byte-db", lambda t: ["search", *TINY, "--out", _file(t / "o" / "study.db", b"").parent]),
    ("search-another-model-in-out", lambda t: ["search", *TINY, "--out", _study_db(t / "o" / "study.db",
                                                                                   "glm4-9b-24GB").parent]),
    ("search-another-model-best-config", lambda t: ["search", *TINY, "--out", _file(
        t / "o" / "best-config.yaml", b"model: glm4-9b\ngpu_mem: 24GB\n").parent]),
    ("report-zero-byte-db", lambda t: ["report", _file(t / "o" / "study.db", b"").parent]),
    ("report-corrupted-db", lambda t: ["report", _file(t / "o" / "study.db", b"SQLite format 3\x00" + b"\x07" * 500).parent]),
    ("report-not-optuna-db", lambda t: ["report", t / "o", "--storage", f"sqlite:///{_plain_sqlite(t / 'o' / 'x.db')}"]),
    ("report-new-db", lambda t: ["report", t, "--storage", f"sqlite:///{t}/new.db"]),
    ("report-unknown-scheme", lambda t: ["report", t, "--storage", "foo://bar"]),
    ("report-memory-db", lambda t: ["report", t, "--storage", "sqlite:///:memory:"]),
    ("report-postgres-unreachable", lambda t: ["report", t, "--storage",
                                               f"postgresql://autofit:{SECRET}@127.0.0.1:1/autofit"]),
    ("report-missing-out", lambda t: ["report", t / "nothing"]),
    ("export-zero-byte-db", lambda t: ["export", _file(t / "o" / "study.db", b"").parent, "--format", "hf"]),
]


def _plain_sqlite(path: Path) -> Path:
    import sqlite3

    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (text)")
    return path


@pytest.mark.parametrize("case", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(case, run_main, tmp_path):
    args = case(tmp_path)
    before = snapshot(tmp_path)
    started = time.monotonic()
    code, out, err = run_main(*args)
    assert code == 2, (code, out, err)
    assert err.startswith("autofit: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and len(err) < 2100
    assert SECRET not in err + out
    assert snapshot(tmp_path) == before  # nothing created, nothing changed (databases included)
    assert time.monotonic() - started < 120  # refused quickly, not after a bomb went off


def test_step_true_is_not_read_as_one():
    from autofit.space import SearchSpace

    with pytest.raises(AutofitError, match="step"):
        SearchSpace.from_mapping({"seq_len": {"low": 64, "high": 256, "step": True, "default": 64}},
                                 fallback=SearchSpace.load())


def test_alias_bomb_is_refused_without_expanding(tmp_path):
    from autofit.space import SearchSpace

    started = time.monotonic()
    with pytest.raises(AutofitError, match="YAML nodes"):
        SearchSpace.load(_space(tmp_path, ALIAS_BOMB))
    assert time.monotonic() - started < 5


def test_spreadsheet_cells_are_neutralised():
    from autofit.outputs import spreadsheet_safe

    frame = pd.DataFrame({"error": ["=HYPERLINK(\"http://x\")", "+1+cmd", "-2", "@SUM(A1)", "-1.5e3", "plain", None],
                          "number": [1, 2, 3, 4, 5, 6, 7]})
    safe = spreadsheet_safe(frame)
    assert list(safe["error"])[:6] == ["'=HYPERLINK(\"http://x\")", "'+1+cmd", "-2", "'@SUM(A1)", "-1.5e3", "plain"]
    assert pd.isna(safe["error"].iloc[6]) and list(safe["number"]) == list(frame["number"])


def test_masked_url_and_scrubbed_messages():
    from autofit.validation import mask_url, one_line

    masked = mask_url(f"postgresql+psycopg2://autofit:{SECRET}@db.internal:5432/autofit")
    assert SECRET not in masked and "***" in masked
    assert SECRET not in one_line(f"driver said: password {SECRET} rejected\nsecond line")


@pytest.fixture(scope="module")
def small_study(tmp_path_factory):
    """A finished 2-trial search of glm-tiny, run in-process, in a folder whose name holds ?mode=ro and %41."""
    from autofit.commands.search import search_command

    root = tmp_path_factory.mktemp("odd")
    out = root / "out?mode=ro%41"
    search_command("glm-tiny", "2GB", 2, None, 0, None, None, None, 1, None, "trace", str(out), None, None, None)
    return out


def test_out_with_url_characters_keeps_the_database_inside(small_study):
    # the sqlite URL is escaped: "?mode=ro" and "%41" stay part of the folder name
    assert (small_study / "study.db").is_file()
    assert sorted(p.name for p in small_study.parent.iterdir()) == [small_study.name]


def test_memory_storage_leaves_no_lock_file(run_main, tmp_path):
    code, out, err = run_main("search", *TINY, "--trials", "1", "--out", tmp_path / "o", "--storage",
                              "sqlite:///:memory:")
    assert code == 0, err
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".lock")]


def test_full_disk_leaves_previous_outputs_and_says_so(small_study, monkeypatch, run_main):
    before = snapshot(small_study)
    calls = {"n": 0, "fail_from": 3}  # the third file finds the disk full
    real_fsync = os.fsync

    def fsync(fd):
        calls["n"] += 1
        if calls["n"] >= calls["fail_from"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    from autofit.outputs import load_study, write_outputs

    with pytest.raises(AutofitError, match="No space left on device.*nothing there was changed"):
        write_outputs(load_study(small_study), small_study)
    assert snapshot(small_study) == before  # no new CSVs beside an old report, no temporaries
    calls["fail_from"] = 0
    code, _, err = run_main("report", small_study)
    assert code == 2 and err.count("\n") == 1 and "No space left" in err
    assert snapshot(small_study) == before


def test_report_does_not_touch_a_valid_study(small_study, run_main):
    db = small_study / "study.db"
    digest = hashlib.sha1(db.read_bytes()).hexdigest()
    code, out, err = run_main("report", small_study)
    assert code == 0, err
    assert hashlib.sha1(db.read_bytes()).hexdigest() == digest


# --- processes: kills and signals ------------------------------------------------------------------------

def _env(**extra):
    return {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
            "COLUMNS": "200", "AUTOFIT_HEARTBEAT_S": "1", **extra}


def _cli(*args, **env):
    return subprocess.Popen([sys.executable, "-m", "autofit", *map(str, args)], cwd=ROOT, env=_env(**env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _load(url, name="glm-tiny-2GB", writable=False):
    """The study as the search wrote it, read-only unless `writable` (conftest.read_only says why)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=name, storage=url if writable else read_only(url))


def _wait_for(predicate, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if predicate():
                return True
        except Exception:  # noqa: BLE001 - a database being created, a file being written
            pass
        time.sleep(0.3)
    return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (dead, not yet reaped by its parent) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except OSError:
        return False


@pytest.mark.slow  # two real searches
def test_trial_orphaned_inside_a_claim_is_marked_lost_and_the_rerun_finishes(tmp_path):
    """The deterministic hang of issue 14: a RUNNING trial with no worker (its claimer died between
    study.ask() and recording itself) used to make every rerun wait forever."""
    out = tmp_path / "o"
    url = f"sqlite:///{out}/study.db"
    first = _cli("search", *TINY, "--trials", "2", "--out", out)
    assert first.wait(timeout=300) == 0, first.stderr.read()
    orphan = _load(url, writable=True).ask()  # what a kill -9 inside the claim leaves behind (no search running)
    rerun = _cli("search", *TINY, "--trials", "3", "--out", out)
    try:
        code = rerun.wait(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(rerun.pid, signal.SIGKILL)
        pytest.fail("the rerun hung on the orphaned trial")
    assert code == 0, rerun.stderr.read()
    trial = _load(url).trials[orphan.number]
    assert trial.state == optuna.trial.TrialState.FAIL and outcome_of(trial) == Outcome.LOST
    assert sum(outcome_of(t) in (Outcome.OK, Outcome.OOM) for t in _load(url).trials) == 3


def test_sigterm_stops_like_ctrl_c_with_status_143(tmp_path):
    out = tmp_path / "o"
    url = f"sqlite:///{out}/study.db"
    marker = tmp_path / "holding"
    # the first probe holds in its pause and says so in `marker`: the signal lands there
    proc = _cli("search", *TINY, "--trials", "30", "--out", out, "--probe", "probes_for_tests:SlowTraceProbe",
                AUTOFIT_TEST_HOLD_AFTER="0", AUTOFIT_TEST_MARKER=str(marker))
    assert _wait_for(lambda: marker.read_text().endswith("\n"), 180), proc.stderr.read() if proc.poll() else ""
    assert any(t.state == optuna.trial.TrialState.RUNNING and TrialAttr.WORKER in t.user_attrs for t in _load(url).trials)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    study = _load(url)
    assert not [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
    assert [t for t in study.trials if outcome_of(t) == Outcome.INTERRUPTED]
    assert (out / "trials.csv").is_file()


@pytest.mark.slow  # a real search killed with SIGKILL
def test_probe_child_dies_with_its_killed_search_and_its_folder_goes(tmp_path):
    marker = tmp_path / "child"
    proc = _cli("search", *TINY, "--trials", "2", "--out", tmp_path / "o", "--probe",
                "probes_for_tests:ParentWatchingChildProbe", AUTOFIT_TEST_MARKER=str(marker))
    assert _wait_for(lambda: marker.read_text().count("\n") >= 1, 180), proc.stderr.read() if proc.poll() else ""
    pid, folder = marker.read_text().split()[:2]
    assert _alive(int(pid)) and Path(folder).is_dir()
    os.kill(proc.pid, signal.SIGKILL)  # nothing in the search can react to this
    proc.wait(timeout=30)
    assert _wait_for(lambda: not _alive(int(pid)), 20), "the probe child outlived its search"
    assert _wait_for(lambda: not Path(folder).exists(), 10), "the probe's temp folder was left behind"


@pytest.mark.slow  # a real search and its two workers, killed
def test_workers_die_with_their_killed_parent(tmp_path):
    out = tmp_path / "o"
    url = f"sqlite:///{out}/study.db"
    proc = _cli("search", *TINY, "--trials", "30", "--out", out, "--workers", "2", "--probe",
                "probes_for_tests:SlowTraceProbe", AUTOFIT_TEST_PROBE_SLEEP="30")
    if not _wait_for(lambda: sum(t.state == optuna.trial.TrialState.RUNNING and TrialAttr.WORKER in t.user_attrs
                                 for t in _load(url).trials) >= 2, 240):
        exited = proc.poll()
        if exited is None:
            os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=30)
        try:
            states = [(t.number, t.state.name, t.user_attrs.get(TrialAttr.WORKER)) for t in _load(url).trials]
        except Exception as exc:  # noqa: BLE001 - no study at all is part of the answer
            states = repr(exc)
        pytest.fail(f"two workers never ran a trial at once; search exit {exited}; trials {states}; "
                    f"stderr: {err[-3000:]}")
    workers = {int(t.user_attrs[TrialAttr.WORKER].rpartition(":")[2]) for t in _load(url).trials
               if t.state == optuna.trial.TrialState.RUNNING}
    assert proc.pid not in workers and all(_alive(pid) for pid in workers)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert _wait_for(lambda: not any(_alive(pid) for pid in workers), 30), "a worker outlived its parent"
    _, err = proc.communicate(timeout=30)  # the workers wrote to the same stderr
    assert "Traceback" not in err, err
    # SIGTERM from their parent's death stopped them like Ctrl-C: their trials are interrupted, not RUNNING
    assert _wait_for(lambda: not [t for t in _load(url).trials if t.state == optuna.trial.TrialState.RUNNING], 10)


def test_read_only_storage_folder_is_refused_before_anything(run_main, tmp_path, monkeypatch):
    # root ignores permission bits, so the folder is made read-only in the eyes of os.access
    folder = tmp_path / "ro"
    folder.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if Path(path) == folder and mode & os.W_OK
                        else real_access(path, mode))
    before = snapshot(tmp_path)
    code, _, err = run_main("search", *TINY, "--out", tmp_path / "o", "--storage", f"sqlite:///{folder}/study.db")
    assert code == 2 and err.count("\n") == 1 and "not writable" in err, err
    assert snapshot(tmp_path) == before


def test_storage_failing_mid_search_is_one_line(run_main, tmp_path, monkeypatch):
    import sqlalchemy

    import autofit.commands.search as search_module

    def full_disk(*args, **kwargs):
        raise sqlalchemy.exc.OperationalError("INSERT INTO trials ...", {}, Exception("database or disk is full"))

    monkeypatch.setattr(search_module, "run_search", full_disk)
    code, _, err = run_main("search", *TINY, "--trials", "1", "--out", tmp_path / "o")
    assert code == 2 and err.count("\n") == 1 and "disk is full" in err and "Traceback" not in err, err
