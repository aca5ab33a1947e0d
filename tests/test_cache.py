"""The on-disk cache (autofit/cache.py): a traced step, a parameter count and a model class's attention flags are
read back exactly as computed, only by the same code and libraries, never when turned off, and a cache that is
corrupt or cannot be written never changes a result."""

import json
import os

import pytest

from autofit import cache, models
from autofit.models import attention_support, causal_lm_class_name, count_parameters, resolve_model
from autofit.probes import _trace
from autofit.probes._records import StepTrace
from autofit.space import SearchSpace

from conftest import run_cli

TINY = resolve_model("glm-tiny")


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    """An empty cache folder of this test's own; the in-process caches in front of it emptied."""
    folder = tmp_path / "cache"
    monkeypatch.setenv(cache.DIR_ENV, str(folder))
    monkeypatch.delenv(cache.SWITCH_ENV, raising=False)
    in_process = (_trace._trace_cached, models._count, models._attention_facts)
    for function in in_process:
        function.cache_clear()
    yield folder
    for function in in_process:
        function.cache_clear()


def _config():
    return SearchSpace.load().default_config().replace(seq_len=64, quantization="nf4", lora_rank=8)


def _entries(folder, namespace):
    return sorted(folder.glob(f"{namespace}-*.json"))


def test_a_trace_read_back_from_disk_equals_the_traced_one(own_cache, monkeypatch):
    traced = _trace.trace_step(TINY, _config())
    assert len(_entries(own_cache, "trace")) == 1
    _trace._trace_cached.cache_clear()

    def no_tracing(*args):
        raise AssertionError("traced again although the trace is on disk")

    monkeypatch.setattr(_trace, "_trace_uncached", no_tracing)
    read = _trace.trace_step(TINY, _config())
    assert read == traced  # every phase, every op count, every float exactly
    assert any(op.kind == "gemm_4bit" for op in read.phases["s2.m0.forward"].ops)  # a real trace, not an empty one


def test_json_form_round_trips_a_trace():
    trace = _trace.trace_step(TINY, _config())
    assert StepTrace.from_json(json.loads(json.dumps(trace.to_json()))) == trace


def test_other_code_or_libraries_miss_the_entry(own_cache, monkeypatch):
    _trace.trace_step(TINY, _config())
    _trace._trace_cached.cache_clear()
    calls = []
    real = _trace._trace_uncached
    monkeypatch.setattr(_trace, "_trace_uncached", lambda *args: calls.append(args) or real(*args))
    monkeypatch.setattr(cache, "fingerprint", lambda: "another autofit or another torch")
    _trace.trace_step(TINY, _config())
    assert len(calls) == 1
    assert len(_entries(own_cache, "trace")) == 2


def test_fingerprint_follows_the_package_files_and_library_versions(monkeypatch):
    first = cache.fingerprint()
    cache.fingerprint.cache_clear()
    monkeypatch.setattr(cache, "version", lambda name: "0.0-other" if name == "torch" else "1")
    try:
        assert cache.fingerprint() != first
    finally:
        cache.fingerprint.cache_clear()


def test_off_reads_and_writes_nothing(own_cache, monkeypatch):
    monkeypatch.setenv(cache.SWITCH_ENV, "off")
    _trace.trace_step(TINY, _config())
    assert not own_cache.exists()
    cache.put("params", "k", 1)
    assert cache.get("params", "k") is None and not own_cache.exists()


def test_a_corrupt_entry_is_a_miss_and_is_replaced(own_cache):
    expected = _trace.trace_step(TINY, _config())
    (entry,) = _entries(own_cache, "trace")
    entry.write_text('{"namespace": "trace", "value": {"depth": 2, "phases": {"s2.opt": [1, 2')  # cut short
    _trace._trace_cached.cache_clear()
    assert _trace.trace_step(TINY, _config()) == expected
    assert StepTrace.from_json(json.loads(entry.read_text())["value"]) == expected


def test_an_unwritable_cache_changes_nothing(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(cache.DIR_ENV, str(blocker / "cache"))  # cannot be created: a file is in the way
    cache.put("params", "k", 1)
    assert cache.get("params", "k") is None
    assert blocker.read_text() == "not a folder"


def test_old_entries_are_pruned(own_cache, monkeypatch):
    monkeypatch.setattr(cache, "MAX_ENTRIES", 4)
    monkeypatch.setattr(cache, "KEEP_AFTER_PRUNE", 2)
    for i in range(5):
        cache.put("params", f"k{i}", i)
        os.utime(cache._entry("params", f"k{i}"), (1000 + i, 1000 + i))  # k0 oldest
    assert [cache.get("params", f"k{i}") for i in range(5)] == [None, None, None, 3, 4]


def test_model_facts_come_back_from_disk(own_cache, monkeypatch):
    spec = resolve_model("gemma2-9b")
    expected = (count_parameters(spec), attention_support(spec, ("sdpa", "eager")), causal_lm_class_name(spec))
    assert expected[1] == {"sdpa": False, "eager": True} and expected[2] == "Gemma2ForCausalLM"
    models._count.cache_clear()
    models._attention_facts.cache_clear()
    monkeypatch.setattr(models, "causal_lm_class", lambda spec: pytest.fail("class looked up again"))
    monkeypatch.setattr(models.ModelSpec, "hf_config", lambda self, **kw: pytest.fail("model built again"))
    assert (count_parameters(spec), attention_support(spec, ("sdpa", "eager")), causal_lm_class_name(spec)) == expected


def test_bad_input_takes_back_what_it_added(own_cache):
    """The attention check writes a cache entry before the rules reject the pinned combination: the exit-2 error
    removes it, and the folder the command made, so bad input changes nothing on disk."""
    bad = ["estimate", "--model", "glm-tiny", "--gpu-mem", "2GB", "--set", "zero_stage=0", "--set", "offload=all"]
    proc = run_cli(*bad)
    assert proc.returncode == 2 and "offload" in proc.stderr
    assert not own_cache.exists()
    good = run_cli("estimate", "--model", "glm-tiny", "--gpu-mem", "2GB", "--set", "seq_len=128", "--json")
    assert good.returncode == 0, good.stderr
    before = {p.name: p.read_bytes() for p in own_cache.iterdir()}
    assert any(name.startswith("trace-") for name in before)
    models._attention_facts.cache_clear()
    assert run_cli(*bad, "--set", "lora_rank=8").returncode == 2
    assert {p.name: p.read_bytes() for p in own_cache.iterdir()} == before  # what good runs stored stays
