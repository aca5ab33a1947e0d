"""The performance model, part by part, on ops whose cost is known by hand (no timing anywhere)."""

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from autofit.gpus import get_gpu
from autofit.models import resolve_model
from autofit.probes import ProbeContext, TraceProbe
from autofit.probes._memtrack import StepTracker
from autofit.probes._perf import TIME_PARTS, OpKey, PerfModel
from autofit.space import SearchSpace
from autofit.units import GIB
from autofit.trials import DetailKey, TrialAttr

from conftest import load_script

PEAK, BW = 100e12, 1e12  # a made-up card: 100 TFLOP/s, 1 TB/s
PERF = PerfModel(peak_flops=PEAK, bandwidth=BW, gemm_max_efficiency=0.8, gemm_half_dim=64,
                 attention_forward_efficiency=0.5, attention_backward_efficiency=0.4, bandwidth_efficiency=0.8,
                 dequant_bandwidth_efficiency=0.2, kernel_launch_us=2.0, cpu_op_overhead_us=10.0,
                 bnb_op_overhead_us=50.0)


def traced_ops(fn, phase="s2.m0.forward"):
    """The op table StepTracker files for what `fn` runs on fake tensors."""
    tracker = StepTracker(vocab_size=7)
    with FakeTensorMode(), tracker:
        tracker.start_phase(phase, "activations")
        fn()
    return tracker.phases[phase].ops


def only(ops, kind):
    [(op, n)] = [(op, n) for op, n in ops.items() if op.kind == kind]
    return op, n


def test_gemm_of_a_given_shape_is_filed_and_priced_by_hand():
    ops = traced_ops(lambda: torch.empty(512, 4096, dtype=torch.bfloat16) @ torch.empty(4096, 1024,
                                                                                          dtype=torch.bfloat16))
    op, n = only(ops, "gemm")
    assert (op.m, op.n, op.k, n) == (512, 1024, 4096, 1)
    eff = 0.8 * (512 / 576) * (1024 / 1088) * (4096 / 4160)
    by_hand = 2 * 512 * 1024 * 4096 / (PEAK * eff) + 2e-6
    part, seconds, _ = PERF.op_seconds(op)
    assert part == "matmul" and seconds == pytest.approx(by_hand, rel=1e-9)


def test_a_card_with_a_measured_gemm_share_prices_gemms_at_it():
    """gpus.yaml's gemm_share (measured large-GEMM throughput over the datasheet) replaces runtime.yaml's judged
    gemm_max_efficiency on that card only; the rest of the model is the same."""
    from dataclasses import replace

    from autofit.runtime import runtime_constants

    constants = runtime_constants()
    a10, rtx4090 = get_gpu("a10"), get_gpu("rtx4090")
    assert a10.gemm_share is None and rtx4090.gemm_share == 1.0
    assert PerfModel.for_gpu(a10, constants).gemm_max_efficiency == constants["gemm_max_efficiency"]
    measured = PerfModel.for_gpu(rtx4090, constants)
    judged = PerfModel.for_gpu(replace(rtx4090, gemm_share=None), constants)
    assert measured.gemm_max_efficiency == 1.0 and judged.gemm_max_efficiency == constants["gemm_max_efficiency"]
    flops = 2 * 4096 * 4096 * 4096
    assert measured.gemm_seconds(4096, 4096, 4096, 0) == pytest.approx(
        flops / (rtx4090.bf16_tflops * 1e12 * (4096 / (4096 + constants["gemm_half_dim"])) ** 3))
    assert judged.gemm_seconds(4096, 4096, 4096, 0) / measured.gemm_seconds(4096, 4096, 4096, 0) == pytest.approx(
        1.0 / constants["gemm_max_efficiency"])
    assert measured.bandwidth_efficiency == judged.bandwidth_efficiency


def test_skinny_lora_gemm_reaches_a_fraction_of_peak():
    big, lora = PERF.gemm_efficiency(4096, 4096, 4096), PERF.gemm_efficiency(4096, 16, 4096)
    assert big == pytest.approx(0.8 * (4096 / 4160) ** 3)
    assert lora == pytest.approx(0.8 * (4096 / 4160) ** 2 * 16 / 80)
    assert lora < 0.25 * big


def test_memory_bound_gemm_is_priced_at_bandwidth():
    # a rank-1 product of 8192 x 8192: 134 MFLOP, but it writes 128 MiB of bf16
    op = OpKey("gemm", False, m=8192, n=8192, k=1, flops=2 * 8192 * 8192, bytes_moved=2 * (8192 * 8192 + 2 * 8192))
    assert PERF.op_seconds(op)[1] == pytest.approx(op.bytes_moved / (BW * 0.8) + 2e-6)


def test_4bit_dequantization_of_a_given_size():
    import bitsandbytes as bnb

    with torch.no_grad():
        bnb.functional.quantize_4bit(torch.zeros(64, 64, dtype=torch.bfloat16), quant_type="nf4")  # real maps

    def dequantize():
        weight = torch.empty(4096, 4096, dtype=torch.bfloat16)
        packed, state = bnb.functional.quantize_4bit(weight, blocksize=64, quant_type="nf4")
        bnb.functional.dequantize_4bit(packed, state)

    ops = traced_ops(dequantize)
    op, _ = only({o: n for o, n in ops.items() if o.kind == "dequant" and o.bytes_moved > 2**24}, "dequant")
    # reads 4096*4096/2 bytes of codes and 4096*4096/64 fp32 absmax, writes 4096*4096 bf16
    assert op.bytes_moved == 4096 * 4096 // 2 + 4096 * 4096 // 64 * 4 + 4096 * 4096 * 2
    part, seconds, dequant = PERF.op_seconds(op)
    assert part == "dequantization" and seconds == pytest.approx(op.bytes_moved / (BW * 0.2) + 2e-6)
    assert dequant == seconds


def test_int8_weight_scaled_to_bf16_is_a_dequantization():
    # bitsandbytes' int8 layers turn codes into a 16-bit weight (codes x row scale) before the matmul
    ops = traced_ops(lambda: torch.empty(4096, 4096, dtype=torch.int8) * torch.empty(4096, 1, dtype=torch.bfloat16))
    op, _ = only(ops, "dequant")
    assert op.bytes_moved == 4096 * 4096 * 1 + 4096 * 2 + 4096 * 4096 * 2


def test_4bit_matmul_pays_the_dequantization_then_a_bf16_gemm():
    op = OpKey("gemm_4bit", False, m=2048, n=4096, k=4096, flops=2 * 2048 * 4096 * 4096, bytes_moved=0)
    part, seconds, dequant = PERF.op_seconds(op)
    assert dequant == pytest.approx(2.5 * 4096 * 4096 / (BW * 0.2))
    gemm = PERF.gemm_seconds(2048, 4096, 4096, 2.0 * 4096 * 4096)
    assert part == "matmul" and seconds == pytest.approx(gemm + dequant + 4e-6)
    parts = PERF.price({op: 3.0})
    assert parts["dequantization"] == pytest.approx(3 * dequant)
    assert parts["matmul"] == pytest.approx(3 * (gemm + 4e-6))


def test_causal_attention_forward_and_backward():
    b, h, s, d = 2, 8, 1024, 64

    def attend():
        q = torch.empty(b, h, s, d, dtype=torch.bfloat16, requires_grad=True)
        out = torch.nn.functional.scaled_dot_product_attention(q, q, q, is_causal=True)
        out.sum().backward()

    ops = traced_ops(attend)
    fwd, _ = only(ops, "attn_fwd")
    bwd, _ = only(ops, "attn_bwd")
    assert fwd.flops == 4 * b * h * s * s * d / 2  # QK^T and PV, half of them masked
    assert bwd.flops == pytest.approx(2.5 * fwd.flops)  # dV, dP, dQ, dK (and the recomputed QK^T)
    assert PERF.op_seconds(fwd)[1] == pytest.approx(fwd.flops / (PEAK * 0.5) + 2e-6)
    assert PERF.op_seconds(bwd)[1] == pytest.approx(bwd.flops / (PEAK * 0.4) + 2e-6)


def test_flash_attention_on_hopper_reaches_its_published_share():
    """FlashAttention-2 reaches 35% of an H100's bf16 peak (FlashAttention-3 paper); the backward keeps
    runtime.yaml's backward/forward ratio. A 1 TFLOP causal forward: 1e12 / (0.35 x 989e12) s."""
    from autofit.runtime import runtime_constants

    constants = runtime_constants()
    h100 = PerfModel.for_gpu(get_gpu("h100"), constants)
    a100 = PerfModel.for_gpu(get_gpu("a100-80gb"), constants)
    fwd = OpKey("attn_fwd", False, flops=1e12, launches=0)
    bwd = OpKey("attn_bwd", False, flops=2.5e12, launches=0)
    assert h100.op_seconds(fwd)[1] == pytest.approx(1e12 / (0.35 * 989e12))
    ratio = constants["attention_backward_efficiency"] / constants["attention_forward_efficiency"]
    assert h100.op_seconds(bwd)[1] == pytest.approx(2.5e12 / (0.35 * ratio * 989e12))
    assert a100.op_seconds(fwd)[1] == pytest.approx(1e12 / (constants["attention_forward_efficiency"] * 312e12))


def test_attention_with_transformers_causal_mask_is_priced_causal():
    b, h, s, d = 1, 4, 512, 64

    def attend():
        q = torch.empty(b, h, s, d, dtype=torch.bfloat16)
        mask = torch.ones(s, s, dtype=torch.bool).tril()
        torch.nn.functional.scaled_dot_product_attention(q, q, q, attn_mask=mask)

    fwd, _ = only(traced_ops(attend), "attn_fwd")
    assert fwd.flops == 4 * b * h * s * s * d / 2


def test_elementwise_and_optimizer_at_bandwidth():
    ops = traced_ops(lambda: torch.empty(1024, 1024, dtype=torch.float32) * 2)
    op, _ = only(ops, "elementwise")
    assert op.bytes_moved == 2 * 4 * 1024 * 1024  # read and write
    assert PERF.op_seconds(op)[1] == pytest.approx(op.bytes_moved / (BW * 0.8) + 2e-6)
    ops = traced_ops(lambda: torch._foreach_mul_([torch.empty(100) for _ in range(100)], 0.5), phase="s2.opt")
    op, _ = only(ops, "optimizer")
    assert op.launches == 3  # 100 tensors, 48 to a launch


def test_host_overhead_bounds_a_step_of_tiny_kernels():
    tiny = OpKey("elementwise", False, bytes_moved=1024)
    parts = PERF.price({tiny: 1000.0})
    gpu = 1000 * (1024 / (BW * 0.8) + 2e-6)
    assert parts["elementwise"] == pytest.approx(gpu)
    assert parts["overhead"] == pytest.approx(1000 * 10e-6 - gpu)
    big = OpKey("elementwise", False, bytes_moved=10**9)
    assert PERF.price({big: 1.0})["overhead"] == 0.0  # the GPU is the bottleneck: no host time shows


def test_checkpointing_recompute_is_its_own_part():
    def backward_ops(checkpoint):
        tracker = StepTracker(vocab_size=7)
        block = torch.nn.Sequential(torch.nn.Linear(256, 512), torch.nn.ReLU(), torch.nn.Linear(512, 256)).to("meta")
        with FakeTensorMode(allow_non_fake_inputs=True), tracker:
            block.to_empty(device="cpu")
            tracker.start_phase("s2.m0.forward", "activations")
            x = torch.empty(64, 256, requires_grad=True)
            y = torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False) if checkpoint else block(x)
            tracker.start_phase("s2.m0.backward", "other")
            y.sum().backward()
        return tracker.phases["s2.m0.backward"].ops

    assert not any(op.recompute for op in backward_ops(False))
    ops = backward_ops(True)
    recomputed = [op for op in ops if op.recompute and op.kind == "gemm"]
    # the first layer's x @ W^T, run again to rebuild the activation the second layer's backward needs
    assert [(op.m, op.n, op.k) for op in recomputed] == [(64, 512, 256)]
    assert PERF.price(ops)["recompute"] > 0


def test_breakdown_reaches_the_probe_and_qlora_pays_dequantization():
    model = resolve_model("glm-tiny")
    context = ProbeContext(usable_budget_bytes=100 * GIB, gpu=get_gpu("a100-80gb"))
    base = SearchSpace.load().default_config().replace(seq_len=256, gradient_accumulation_steps=1)
    lora = TraceProbe().run(model, base, context)
    qlora = TraceProbe().run(model, base.replace(quantization="nf4"), context)
    for result in (lora, qlora):
        parts = result.details["time_breakdown_s"]
        assert tuple(parts) == TIME_PARTS
        # each of the 8 parts is rounded to 1 us in the details
        assert sum(parts.values()) == pytest.approx(result.step_time_s, rel=1e-4, abs=len(TIME_PARTS) * 5e-7)
    assert lora.details["time_breakdown_s"]["dequantization"] == 0
    assert qlora.details["time_breakdown_s"]["dequantization"] > 0
    gpu_busy = [sum(v for k, v in r.details["time_breakdown_s"].items() if k != "overhead") for r in (lora, qlora)]
    assert gpu_busy[1] > gpu_busy[0]  # the same GEMMs, plus dequantization
    # checkpointing re-runs the 4-bit matmuls in the backward: every one of them is filed as recompute
    from autofit.probes._trace import trace_step

    backward = trace_step(model, base.replace(quantization="nf4")).phases["s2.m0.backward"].ops
    in_backward = [op for op in backward if op.kind == "gemm_4bit"]
    assert in_backward and all(op.recompute for op in in_backward)


def test_report_shows_the_time_breakdown_of_the_front(tmp_path):
    from autofit.budget import make_budget
    from autofit.report import render_report
    from autofit.search import SearchPlan, open_study, run_search

    pins = {"seq_len": 256}
    plan = SearchPlan(model=resolve_model("glm-tiny"), space=SearchSpace.load().pinned(pins), pins=pins,
                      budget=make_budget("1.2GB"), gpu=get_gpu("a100-80gb"), gpu_source="named", probe=TraceProbe(),
                      trials=4, storage=f"sqlite:///{tmp_path}/t.db", study_name="t", seed=0)
    study = open_study(plan)
    run_search(plan, study)
    probed = [t for t in study.trials if TrialAttr.DETAILS in t.user_attrs]  # not the ones inferred without a probe
    assert probed and all(set(t.user_attrs[TrialAttr.DETAILS][DetailKey.TIME_BREAKDOWN_S]) == set(TIME_PARTS) for t in probed)
    page = render_report(study)
    section = page[page.index("id='time'"):page.index("id='knobs'")]
    assert "ms per 1,000 tokens per GPU (estimated)" in section and "matmul" in section


def test_zero3_collectives_and_deepspeed_adam_by_hand():
    from autofit.probes._zero import ModelSizes, zero_step_time_parts, zero_transfer_seconds
    from autofit.runtime import runtime_constants

    constants = runtime_constants()
    gpu = get_gpu("a100-80gb")  # NVLink 300 GB/s, HBM 2039 GB/s
    sizes = ModelSizes(trainable_params=1e8, total_params=1e10, layer_weight_bytes=0, hidden_size=4096,
                       weight_bytes=2e10)
    config = SearchSpace.load().default_config().replace(zero_stage=3, offload="none", gradient_accumulation_steps=2,
                                                         gradient_checkpointing=True)
    parts = zero_step_time_parts(config, sizes, gpu, 4, constants)
    peer = 300e9 * constants["collective_efficiency"]
    grads = 2 * 1e8 * 3 / 4 / peer
    gathers = 2 * 3 * 2 * 1e10 * 3 / 4 / peer  # 2 micro-steps x (forward, recompute, backward) x bf16
    assert parts["offload_communication"] == pytest.approx(2 * grads + grads + gathers)
    # issued during the micro-steps: each one's reduce-scatter and gathers; at the optimizer step: the all-gather
    assert zero_transfer_seconds(config, sizes, gpu, 4, constants) == pytest.approx((2 * grads + gathers, grads))
    assert parts["optimizer"] == pytest.approx(1e8 / 4 * 30 / (2039e9 * constants["bandwidth_efficiency"]))
    single = zero_step_time_parts(config.replace(zero_stage=0), sizes, gpu, 1, constants)
    assert sum(single.values()) == 0


def test_throughput_accuracy_bench_prints_the_issue_keys(tmp_path):
    """The benchmark runs from its committed trace cache (accuracy itself is judged there, never here)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    doc = tmp_path / "accuracy.md"
    proc = subprocess.run([sys.executable, "bench/throughput_accuracy.py", "--json", "--trials", "3", "--doc", str(doc)],
                          cwd=root, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert list(data) == ["points", "sources", "spearman", "median_abs_err_pct", "p90_abs_err_pct", "loso_spearman",
                          "loso_median_abs_err_pct"]
    assert data["points"] >= 40 and data["sources"] >= 2
    text = doc.read_text()
    assert "| source | model | method |" in text and "implied util." in text and "Data quality" in text
    # the held-out rows are judged apart: in their own section, in no summary figure
    import csv

    published = list(csv.DictReader((root / "bench" / "throughput" / "published.csv").open()))
    heldout = list(csv.DictReader((root / "bench" / "throughput" / "heldout.csv").open()))
    assert data["points"] == len(published) and heldout
    assert not {r["source"] for r in heldout} & {r["source"] for r in published}
    before, rest = text.split("## Held out")
    section, every_row = rest.split("## Every row")
    for source in {r["source"] for r in heldout}:
        assert f"| {source} |" in section and f"| {source} |" not in before + every_row


def test_host_overhead_bench_counts_bitsandbytes_ops_apart(tmp_path):
    """bench/throughput/host_overhead.py divides measured step time by the trace's op counts: an nf4 QLoRA step
    has one 4-bit matmul per adapted linear per forward and recompute, and its non-bitsandbytes ops are fewer
    than the bf16 step's (the bf16 GEMMs are gone). Timing itself is the benchmark's, never asserted here."""
    import json

    from autofit.probes import trace_step

    bench = load_script("bench/throughput/host_overhead.py")
    (tmp_path / "config.json").write_text(json.dumps(bench.TINY))
    model = resolve_model(str(tmp_path))
    base = SearchSpace.load().default_config().replace(per_device_train_batch_size=1, gradient_accumulation_steps=1,
                                                       seq_len=32, lora_rank=8, gradient_checkpointing=True)
    plain = bench.op_counts(trace_step(model, base.replace(quantization="none")))
    nf4 = bench.op_counts(trace_step(model, base.replace(quantization="nf4")))
    assert plain[1] == 0 and nf4[1] > 0
    linears = 7 * bench.TINY["num_hidden_layers"]  # q, k, v, o, gate, up, down
    assert nf4[1] >= 2 * linears  # a 4-bit matmul in the forward and again in the recompute, each
    assert nf4[0] < plain[0]


def test_zero3_module_hooks_are_host_time_per_linear_and_pass():
    from autofit.knobs import TrainingConfig
    from autofit.probes._records import PhaseRecord, StepTrace
    from autofit.probes._trace import zero3_hook_host_s

    linear = OpKey("gemm", False, m=256, n=4096, k=4096)
    recomputed = OpKey("gemm", True, m=256, n=4096, k=4096)
    forward = PhaseRecord(ops={linear: 10.0, recomputed: 10.0, OpKey("elementwise", False, bytes_moved=8): 5.0})
    trace = StepTrace(depth=1, phases={"s2.m0.forward": forward}, trainable_params=1.0, total_params=1.0,
                      weight_bytes=2.0, micro_steps_traced=1)
    constants = {"zero3_module_hook_us": 400.0}
    config = TrainingConfig(per_device_train_batch_size=1, gradient_accumulation_steps=8, seq_len=256, lora_rank=0,
                            quantization="none", gradient_checkpointing=True, zero_stage=3, offload="none",
                            optimizer="adamw_torch", attn_implementation="sdpa")
    # 10 linear modules (recomputed GEMMs are the same modules) x forward, recompute, backward x 400 us
    assert zero3_hook_host_s(trace, config, constants) == pytest.approx(10 * 3 * 400e-6)
    assert zero3_hook_host_s(trace, config.replace(gradient_checkpointing=False), constants) == pytest.approx(
        10 * 2 * 400e-6)
    assert zero3_hook_host_s(trace, config.replace(zero_stage=2), constants) == 0.0
    # host time overlaps the GPU: it shows as overhead only beyond the kernels' time
    big = OpKey("elementwise", False, bytes_moved=10**9)
    gpu = PERF.op_seconds(big)[1]
    assert PERF.price({big: 1.0}, extra_host_s=gpu / 2)["overhead"] == 0.0
    assert PERF.price({big: 1.0}, extra_host_s=gpu + 0.5)["overhead"] == pytest.approx(0.5 + 10e-6)
    # and the collectives issued meanwhile: the host's hooks run while the gathers are in flight
    assert PERF.price({big: 1.0}, extra_host_s=gpu + 0.5, transfer_s=0.3)["overhead"] == pytest.approx(0.2 + 10e-6)
    assert PERF.price({big: 1.0}, extra_host_s=gpu + 0.5, transfer_s=0.6)["overhead"] == 0.0


@pytest.mark.parametrize("device_name, key", [("NVIDIA A100-SXM4-80GB", "a100-80gb"), ("NVIDIA A10", "a10"),
                                              ("NVIDIA L40S", "l40s"), ("NVIDIA L4", "l4"),
                                              ("NVIDIA RTX A6000", "rtxa6000"), ("NVIDIA GeForce RTX 4090", "rtx4090"),
                                              ("NVIDIA B200", None)])
def test_detected_card_is_the_longest_match(monkeypatch, device_name, key):
    import autofit.gpus as gpus

    monkeypatch.setattr(gpus, "cuda_device_name", lambda: device_name)
    spec = gpus.detect_gpu()
    assert (spec.key if spec else None) == key


def test_implied_utilisation_of_a_published_row_by_hand():
    """bench/throughput_accuracy.py's data-quality column: published tokens/s x the traced GEMM and attention
    FLOPs per token, over the cards' dense bf16 peak; elementwise ops do not count."""
    from autofit.probes._records import PhaseRecord, StepTrace

    bench = load_script("bench/throughput_accuracy.py")
    forward = PhaseRecord(ops={OpKey("gemm", False, m=1000, n=1000, k=1000, flops=2e9): 1000.0,
                               OpKey("elementwise", False, bytes_moved=8, flops=5e12): 1.0})
    backward = PhaseRecord(ops={OpKey("attn_bwd", False, flops=1e12): 1.0, OpKey("gemm", True, flops=1e12): 1.0})
    trace = StepTrace(depth=1, phases={"s2.m0.forward": forward, "s2.m0.backward": backward}, trainable_params=1.0,
                      total_params=1.0, weight_bytes=2.0, micro_steps_traced=1)
    config = SearchSpace.load().default_config().replace(per_device_train_batch_size=2, seq_len=500)
    row = {"trace": trace, "config": config, "tokens_per_s": 100.0, "gpus": 2, "gpu": "a100-80gb"}
    flops_per_token = (2e12 + 1e12 + 1e12) / 1000  # forward GEMMs, attention backward, recomputed GEMM
    peak = get_gpu("a100-80gb").bf16_tflops * 1e12
    assert bench.implied_utilisation(row) == pytest.approx(100.0 * flops_per_token / (2 * peak))
