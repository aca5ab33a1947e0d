"""Commands pay only for the libraries they use: `autofit --help` and the CLI module import no torch,
`autofit estimate` imports what the trace probe needs (torch, transformers, peft), not the search's or the
report's libraries, and a second estimate of the same model, which reads its trace from the on-disk cache,
imports none of them. Each check runs in a fresh interpreter, where sys.modules starts empty."""

import json
import os
import subprocess
import sys

from conftest import ROOT

# what estimate must not load: the ZeRO real probes' DeepSpeed, the search's Optuna, the report's pandas/plotly
NOT_FOR_ESTIMATE = ("deepspeed", "optuna", "pandas", "plotly", "sqlalchemy")


def _python(code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env=None if env is None else {**os.environ, **env})


def test_importing_the_cli_imports_no_torch():
    proc = _python("import autofit.cli, sys; assert 'torch' not in sys.modules, 'torch imported'")
    assert proc.returncode == 0, proc.stderr


def test_help_imports_no_torch():
    proc = _python("import sys, runpy\nsys.argv = ['autofit', '--help']\ntry:\n    runpy.run_module('autofit', "
                   "run_name='__main__')\nexcept SystemExit as exc:\n    assert exc.code in (0, None)\n"
                   "heavy = [m for m in ('torch', 'transformers', 'peft', 'optuna', 'pandas') if m in sys.modules]\n"
                   "assert not heavy, heavy")
    assert proc.returncode == 0, proc.stderr


TRACE_LIBRARIES = ("torch", "transformers", "peft", "bitsandbytes")


def _estimate_script(must_import: bool) -> str:
    check = ("assert 'torch' in sys.modules and not extra, extra" if must_import else
             f"extra += [m for m in {TRACE_LIBRARIES!r} if m in sys.modules]\nassert not extra, extra")
    return ("import sys, runpy\nsys.argv = ['autofit', 'estimate', '--model', 'glm-tiny', '--gpu-mem', '2GB', "
            "'--json']\ntry:\n    runpy.run_module('autofit', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            f"extra = [m for m in {NOT_FOR_ESTIMATE!r} if m in sys.modules]\n{check}")


def test_estimate_imports_only_what_the_trace_needs_and_a_rerun_none_of_it(tmp_path):
    env = {"AUTOFIT_CACHE_DIR": str(tmp_path / "cache")}  # empty: the first estimate traces
    cold = _python(_estimate_script(must_import=True), env)
    assert cold.returncode == 0, cold.stderr
    assert '"peak_memory_gib"' in cold.stdout  # it did run the estimate
    warm = _python(_estimate_script(must_import=False), env)
    assert warm.returncode == 0, warm.stderr
    assert json.loads(warm.stdout) == json.loads(cold.stdout)
