"""Probes declare what they can do (ProbeCapabilities); the search and the budget follow the declaration,
never the probe's name, so a probe given as --probe package.module:Class gets the behaviour it declares."""

import pytest

import autofit.budget
from autofit.budget import make_budget, probe_budget
from autofit.errors import AutofitError
from autofit.gpus import get_gpu
from autofit.models import resolve_model
from autofit.probes import (CPU_CAPABILITIES, CUDA_CAPABILITIES, CpuProbe, CudaProbe, ProbeCapabilities, ScreenedProbe,
                            TraceProbe, get_probe)
from autofit.search import SearchPlan
from autofit.space import SearchSpace

MIB = 2**20


# the knobs under test stay free; the rest is held at the defaults to keep the candidate set small
UNDER_TEST = ("allocator", "zero_stage", "offload")


def plan_for(probe, model="glm-tiny", pins=None):
    defaults = SearchSpace.load().defaults
    pins = {**{k: v for k, v in defaults.items() if k not in UNDER_TEST}, **(pins or {})}
    return SearchPlan(model=resolve_model(model), space=SearchSpace.load().pinned(pins), pins=pins,
                      budget=make_budget("24GB"), gpu=get_gpu("h100"), gpu_source="named", probe=probe, trials=1,
                      storage="sqlite:///:memory:", study_name="t")


def test_declarations_of_the_built_in_probes():
    assert TraceProbe.capabilities == ProbeCapabilities()  # the defaults: estimates, runs nothing on a device
    assert CudaProbe.capabilities is CUDA_CAPABILITIES and CpuProbe.capabilities is CPU_CAPABILITIES
    assert ScreenedProbe(CpuProbe()).capabilities is CPU_CAPABILITIES  # screening keeps the real probe's
    assert "allocator" in CUDA_CAPABILITIES.device_knobs and not CPU_CAPABILITIES.runtime_reserve


def test_a_third_party_cuda_probe_gets_the_allocator_searched():
    probe = get_probe("probes_for_tests:CudaDeclaringProbe")
    assert probe.name == "my-gpu"
    plan = plan_for(probe)
    assert plan.space.values["allocator"] == SearchSpace.load().values["allocator"]
    assert len(plan.space.values["allocator"]) > 1 and "allocator" in plan.candidates.searched


@pytest.mark.parametrize("spec", ["probes_for_tests:NamedCudaProbe", "probes_for_tests:SlowTraceProbe", "trace"])
def test_a_probe_declaring_nothing_does_not(spec):
    plan = plan_for(get_probe(spec))
    assert plan.space.values["allocator"] == (SearchSpace.load().defaults["allocator"],)
    assert "allocator" not in plan.candidates.searched


def test_the_users_pin_wins_over_a_probe_that_cannot_vary_it():
    plan = plan_for(TraceProbe(), pins={"allocator": "expandable"})
    assert plan.space.values["allocator"] == ("expandable",)


def test_the_reserve_follows_the_declaration(monkeypatch):
    calls = []

    def measured():
        calls.append(1)
        return 700 * MIB

    monkeypatch.setattr(autofit.budget, "measure_cuda_reserve", measured)
    cuda = probe_budget("24GB", None, get_probe("probes_for_tests:CudaDeclaringProbe").capabilities)
    assert (cuda.reserve_source, cuda.reserve_bytes, len(calls)) == ("measured", 700 * MIB, 1)
    named = probe_budget("24GB", None, get_probe("probes_for_tests:NamedCudaProbe").capabilities)
    assert named.reserve_source == "default" and named.reserve_bytes > 0 and len(calls) == 1  # not measured
    cpu = probe_budget("24GB", None, get_probe("probes_for_tests:CpuDeclaringProbe").capabilities)
    assert (cpu.reserve_source, cpu.reserve_bytes) == ("none (CPU)", 0)
    assert cpu.usable_bytes - named.usable_bytes == named.reserve_bytes


def test_a_third_party_cpu_probe_holds_what_it_cannot_measure():
    probe = get_probe("probes_for_tests:CpuDeclaringProbe")
    plan = plan_for(probe)
    assert plan.space.values["zero_stage"] == (0,) and plan.space.values["offload"] == ("none",)
    assert len(plan_for(TraceProbe()).space.values["zero_stage"]) > 1  # the trace probe varies ZeRO
    with pytest.raises(AutofitError, match="--probe my-cpu runs real training steps on the CPU.*up to 2B"):
        plan_for(probe, model="glm4-9b")
    plan_for(get_probe("probes_for_tests:CudaDeclaringProbe"), model="glm4-9b")  # no limit declared
