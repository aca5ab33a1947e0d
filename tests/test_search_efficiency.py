"""bench/search_efficiency.py: its hypervolume, its oracle cache, its JSON, and autofit's sampler against the
baselines on a small oracle of the tiny model (built with the real trace probe in about 20 s)."""

import io
import json
import statistics
import sys
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import search_efficiency as se  # noqa: E402

from autofit.trials import Outcome  # noqa: E402

TINY = {
    "model": "glm-tiny", "gpu_mem": "1.2GB", "gpu": "h100",
    "space": {
        "per_device_train_batch_size": [1, 4, 16], "gradient_accumulation_steps": [2, 8], "seq_len": [512, 2048],
        "lora_rank": [0, 8], "quantization": ["none", "nf4"], "gradient_checkpointing": [True, False],
        "zero_stage": [0, 1, 2, 3], "offload": ["none", "optimizer", "all"], "optimizer": ["adamw_torch"],
        "attn_implementation": ["sdpa"]},
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny oracle, registered as `glm-tiny-1.2GB`, cached in a temporary folder."""
    patch = pytest.MonkeyPatch()
    patch.setitem(se.ORACLES, "glm-tiny-1.2GB", TINY)
    patch.setattr(se, "CACHE", tmp_path_factory.mktemp("cache"))
    oracle = se.load_oracle("glm-tiny-1.2GB", jobs=1)
    yield oracle
    patch.undo()


def test_hypervolume_matches_optuna():
    from optuna._hypervolume import compute_hypervolume

    rng = np.random.default_rng(3)
    for _ in range(20):
        points = [(float(t), float(m)) for t, m in zip(rng.random(30) * 1000, rng.random(30) * 30, strict=False)]
        budget = 24.0
        inside = np.array([[-t, m] for t, m in points if m <= budget])
        theirs = compute_hypervolume(inside, np.array([0.0, budget]))
        assert se.hypervolume(points, budget) == pytest.approx(theirs, rel=1e-12)
    assert se.hypervolume([(10.0, 30.0)], 24.0) == 0.0  # above the budget: nothing


def test_oracle_is_cached_and_complete(tiny):
    assert tiny["configs"] >= 300 and len(tiny["results"]) == tiny["configs"]
    states = [r[0] for r in tiny["results"].values()]
    assert 0.2 < states.count(Outcome.OK) / len(states) < 0.8
    assert list(se.CACHE.glob("glm-tiny-1.2GB-*.json"))
    again = se.load_oracle("glm-tiny-1.2GB", jobs=1)  # from the cache: no trace runs
    assert again["results"] == tiny["results"]


def test_autofit_finds_the_front_with_few_probes(tiny):
    """10% of the space: autofit reaches the exhaustive front and the fastest configuration, and does at
    least as well as random search and TPE (medians of 3 seeds)."""
    summary = se.oracle_summary(tiny)
    k = -(-tiny["configs"] // 10)
    figures = {}
    for method in ("autofit", "random", "tpe"):
        runs = [se.run_method("glm-tiny-1.2GB", tiny, method, seed, k) for seed in range(3)]
        figures[method] = (statistics.median(r["hv"][-1] / summary["hv"] for r in runs),
                           statistics.median(r["best"][-1] / summary["best_tps"] for r in runs))
        if method == "autofit":
            assert all(r["probes"] <= k for r in runs) and all(r["inferred"] > 0 for r in runs)
    hv, best = figures["autofit"]
    assert hv >= 0.98 and best >= 0.99, figures
    for method in ("random", "tpe"):
        assert hv >= figures[method][0] and best >= figures[method][1], figures


def test_quick_json(tiny, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["search_efficiency.py", "--quick", "--json", "--oracle", "glm-tiny-1.2GB",
                                      "--seeds", "1", "--jobs", "1"])
    monkeypatch.setattr(se, "ORACLES", {"glm-tiny-1.2GB": TINY})
    out = io.StringIO()
    with redirect_stdout(out):
        se.main()
    data = json.loads(out.getvalue())
    assert set(data) == {"glm-tiny-1.2GB"}
    assert set(data["glm-tiny-1.2GB"]) == set(se.METHODS)
    for figures in data["glm-tiny-1.2GB"].values():
        assert set(figures) == {"hv_ratio_at_10pct", "best_tps_ratio_at_10pct"}
        assert all(0.0 <= v <= 1.0 for v in figures.values())
