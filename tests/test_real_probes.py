"""Real probes: short real training runs in child processes (on the CPU here; the cuda path skips without a GPU)."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from autofit.gpus import get_gpu
from autofit.models import ModelSpec, resolve_model
from autofit.probes import CpuProbe, CudaProbe, ProbeContext, ScreenedProbe, TraceProbe
from autofit.space import SearchSpace
from autofit.units import GIB
from autofit.trials import EVALUATED, Outcome
from conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
MODEL_DIR = TESTS / "data" / "glm-20m"
MODEL = resolve_model(str(MODEL_DIR))
CTX = ProbeContext(usable_budget_bytes=int(0.95 * GIB), gpu=get_gpu("h100"))


def small(**changes):
    base = dict(gradient_accumulation_steps=1, seq_len=128, per_device_train_batch_size=2, lora_rank=8)
    return SearchSpace.load().default_config().replace(**{**base, **changes})


def cli(*args, **env):
    full_env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
                **env}
    return subprocess.run([sys.executable, "-m", "autofit", *map(str, args)], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=900)


def test_the_test_model_has_about_20m_parameters():
    assert 15e6 < MODEL.params < 25e6


@pytest.mark.slow  # real training steps on the CPU
@pytest.mark.parametrize("changes", [dict(quantization="nf4", optimizer="adamw_8bit", gradient_accumulation_steps=2),
                                     dict(lora_rank=0, quantization="none")])
def test_cpu_probe_measures_and_the_trace_predicts_it(changes):
    config = small(**changes)
    result = CpuProbe(timeout_s=300, threads=1).run(MODEL, config, CTX)
    assert result.state == Outcome.OK, result.error
    assert not result.estimated and result.probe == "cpu" and result.details["threads"] == 1
    assert result.tokens_per_s > 0 and result.details["measured_steps_s"]
    assert 0 < result.peak_allocated_gib <= CTX.usable_budget_bytes / GIB
    predicted = TraceProbe().run(MODEL, config, CTX).peak_memory_gib
    # the same ops on the same device: the trace's bytes match the real run's within a few percent
    assert predicted == pytest.approx(result.peak_allocated_gib, rel=0.05)


@pytest.mark.slow  # real training steps on the CPU
def test_quantized_model_builds_layer_by_layer_within_the_budget():
    """QLoRA of a model whose bf16 weights (31 MiB) exceed the budget (24 MiB): a quantizing loader never holds
    them all at once, and neither may the probe, or a 32B QLoRA search on a 24 GB card would OOM while building."""
    wide = ModelSpec(name="glm-wide", config=dict(MODEL.config, vocab_size=1024, hidden_size=512,
                                                  intermediate_size=2048, num_attention_heads=8, head_dim=64),
                     hf_ref="glm-wide")
    budget = ProbeContext(usable_budget_bytes=24 * 2**20, gpu=get_gpu("h100"))
    assert wide.params * 2 > budget.usable_budget_bytes
    result = CpuProbe(timeout_s=300).run(wide, small(quantization="nf4", per_device_train_batch_size=1, seq_len=64),
                                         budget)
    assert result.state == Outcome.OK, result.error
    assert 0 < result.peak_allocated_gib * GIB <= budget.usable_budget_bytes


@pytest.mark.slow  # real training steps on the CPU
def test_cpu_probe_runs_out_of_memory_by_the_budget():
    result = CpuProbe(timeout_s=300).run(MODEL, small(per_device_train_batch_size=64, seq_len=512,
                                                      gradient_checkpointing=False), CTX)
    assert result.state == Outcome.OOM
    assert "out of memory" in result.error
    assert result.peak_allocated_gib <= CTX.usable_budget_bytes / GIB * 1.01


def test_screen_skips_what_the_trace_predicts_far_over_budget():
    result = ScreenedProbe(CpuProbe(timeout_s=300), 0.10).run(MODEL, small(per_device_train_batch_size=64,
                                                                           seq_len=4096), CTX)
    assert result.state == Outcome.OOM_PREDICTED and result.predicted_peak_gib > 1.1 * 0.95
    assert result.duration_s < 30  # nothing was run


@pytest.mark.slow  # real training steps on the CPU
@pytest.mark.timeout(900)  # as long as its subprocess may take
def test_cpu_search_end_to_end(tmp_path):
    """`autofit search --probe cpu` in a real process: real training steps measure the trials, an out-of-memory
    one among them, and then confirm the recommendation's longest seq_len (seq-len.csv, the summary and the
    report label it measured, the other strategies' boundaries estimated)."""
    out = tmp_path / "out"
    proc = cli("search", "--probe", "cpu", "--model", MODEL_DIR, "--gpu-mem", "1GB", "--trials", 4,
               "--space", TESTS / "data" / "cpu-space.yaml", "--no-screen", "--out", out, "--seed", 3)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader((out / "trials.csv").open()))
    probed = [r for r in rows if r["state"] in EVALUATED]
    assert len(probed) == 4 and all(r["probe"] == "cpu" for r in probed)
    ok = [r for r in probed if r["state"] == Outcome.OK]
    oom = [r for r in probed if r["state"] == Outcome.OOM]
    assert ok and oom, [r["state"] for r in rows]
    for r in ok:
        assert float(r["tokens_per_s"]) > 0
        assert float(r["peak_memory_gib"]) <= 0.95
        assert r["predicted_peak_gib"] and r["peak_allocated_gib"] and r["peak_reserved_gib"]
        assert abs(float(r["prediction_error_pct"])) < 5
    assert "measured" in (out / "best-config.yaml").read_text() or "estimated: false" in (out / "best-config.yaml").read_text()
    # the recommendation's longest seq_len is confirmed by real probes; the other strategies' stay estimated
    seq_rows = list(csv.DictReader((out / "seq-len.csv").open()))
    [rec] = [r for r in seq_rows if r["recommended"] == "True"]
    assert rec["confirmed"] in ("measured", "moved") and rec["estimated"] == "False"
    assert rec["measured_peak_gib"] and float(rec["measured_peak_gib"]) <= 0.95
    assert rec["measured_probes"].startswith(f"{int(float(rec['trace_longest_seq_len']))}:")
    assert all(r["confirmed"] == "estimated" for r in seq_rows if r is not rec)
    assert "by a real probe" in proc.stdout
    report = (out / "report.html").read_text()
    assert "measured: the real probe agrees" in report or "measured: moved from the trace" in report


def test_hanging_probe_is_killed_and_the_search_goes_on(tmp_path, monkeypatch):
    # the search runs in-process (conftest.run_cli); its probe children are real processes
    marker = tmp_path / "pids"
    monkeypatch.setenv("AUTOFIT_TEST_TIMEOUT", "2")
    monkeypatch.setenv("AUTOFIT_TEST_MARKER", str(marker))
    proc = run_cli("search", "--probe", "probes_for_tests:HangingProbe", "--model", "glm-tiny", "--gpu-mem", "2GB",
                   "--trials", 2, "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader((tmp_path / "out" / "trials.csv").open()))
    assert [r["state"] for r in rows] == [Outcome.TIMEOUT, Outcome.TIMEOUT]
    assert "timeout" in rows[0]["error"]
    for pid in marker.read_text().split():
        with pytest.raises(ProcessLookupError):
            os.kill(int(pid), 0)  # the hung child is gone


def test_crashing_child_is_recorded_failed(tmp_path):
    # the search runs in-process (conftest.run_cli); its probe children are real processes
    proc = run_cli("search", "--probe", "probes_for_tests:CrashingChildProbe", "--model", "glm-tiny", "--gpu-mem",
                   "2GB", "--trials", 2, "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader((tmp_path / "out" / "trials.csv").open()))
    assert [r["state"] for r in rows] == [Outcome.FAILED, Outcome.FAILED]
    assert "NCCL error" in rows[0]["error"] and "exit status 134" in rows[0]["error"]


def test_zero_probe_without_deepspeed_fails_with_how_to_install(monkeypatch):
    """DeepSpeed is an extra: a ZeRO real probe without it is a failed trial saying how to install it (no child is
    started), while a configuration without ZeRO does not need it."""
    import importlib.util

    from autofit.probes._training import deepspeed_missing

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "deepspeed" else find_spec(name, *a))
    result = CudaProbe(timeout_s=1).run(MODEL, small(zero_stage=2), CTX)  # only the cuda probe runs ZeRO
    assert result.state == Outcome.FAILED and result.duration_s < 1
    assert result.error == 'ZeRO stage 2 needs DeepSpeed, which is not installed: pip install "autofit[deepspeed]"'
    assert deepspeed_missing(small(zero_stage=0)) is None


def test_trace_lora_and_exports_need_no_deepspeed(monkeypatch):
    """The trace probe (ZeRO included: it is modelled, not run), LoRA and the exports never import DeepSpeed."""
    from autofit.exports import ExportContext, render

    for name in [m for m in sys.modules if m == "deepspeed" or m.startswith("deepspeed.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "deepspeed", None)  # any `import deepspeed` now raises ImportError
    for config in (small(), small(zero_stage=3, offload="all", lora_rank=0)):
        assert TraceProbe().run(MODEL, config, CTX).state in (Outcome.OK, Outcome.OOM)
        ctx = ExportContext("m", "m", None, config, 1.0, 1.0, "trace", True, "1GB", 0.95)
        assert render("hf", ctx)


@pytest.mark.slow  # real training steps on the CPU
@pytest.mark.timeout(900)  # as long as its subprocess may take
def test_validate_gpu_runs_with_the_cpu_probe(tmp_path):
    out = tmp_path / "cpu.md"
    proc = subprocess.run([sys.executable, "bench/validate_gpu.py", "--probe", "cpu", "--model", str(MODEL_DIR),
                           "--limit", "2", "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    table = [line for line in out.read_text().splitlines() if line.startswith("| glm-20m")]
    assert len(table) == 2 and all("| ok |" in line for line in table)
    assert "2/2 rows" in out.read_text()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_probe_measures_on_the_gpu():
    gpu_ctx = ProbeContext(usable_budget_bytes=int(8 * GIB), gpu=get_gpu("h100"))
    result = CudaProbe(timeout_s=300).run(resolve_model("glm-tiny"), small(), gpu_ctx)
    assert result.state == Outcome.OK, result.error
    assert result.peak_allocated_gib > 0 and result.peak_reserved_gib >= result.peak_allocated_gib
    assert result.details["runtime_reserve_bytes"] > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_probe_runs_qlora_with_the_expandable_allocator():
    gpu_ctx = ProbeContext(usable_budget_bytes=int(8 * GIB), gpu=get_gpu("h100"))
    config = small(quantization="nf4", optimizer="paged_adamw_8bit", allocator="expandable")
    result = CudaProbe(timeout_s=300).run(MODEL, config, gpu_ctx)
    assert result.state == Outcome.OK, result.error
    assert result.details["allocator_conf"] == "expandable_segments:True"
    assert result.tokens_per_s > 0 and 0 < result.peak_allocated_gib < 8


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_search_process_leaves_cuda_to_the_probes():
    """Reading the card, the budget and a trace screen must not initialise CUDA in the search's own process: its
    context would take memory from every probe on the card."""
    code = ("import torch\n"
            "from autofit.budget import make_budget\nfrom autofit.gpus import detect_gpu, get_gpu\n"
            "from autofit.models import resolve_model\nfrom autofit.probes import ProbeContext, TraceProbe\n"
            "from autofit.space import SearchSpace\n"
            "budget = make_budget('24GB', measure=True)\ndetect_gpu()\n"
            "config = SearchSpace.load().default_config().replace(quantization='nf4', optimizer='paged_adamw_8bit')\n"
            "TraceProbe().run(resolve_model('glm-tiny'), config, "
            "ProbeContext(usable_budget_bytes=budget.usable_bytes, gpu=get_gpu('h100')))\n"
            "print(budget.reserve_source, torch.cuda.is_initialized())\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "measured False"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_probe_emulates_a_smaller_card():
    tiny_budget = ProbeContext(usable_budget_bytes=int(0.05 * GIB), gpu=get_gpu("h100"))
    result = CudaProbe(timeout_s=300).run(MODEL, small(per_device_train_batch_size=64, seq_len=512), tiny_budget)
    assert result.state == Outcome.OOM
