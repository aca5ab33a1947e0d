"""The HTML report, from real searches (autofit's sampler and the trace probe on the glm-tiny preset), checked as
HTML and opened from file:// in headless Chromium (Debian's `chromium`; the browser tests skip without it)."""

import json
import re
import zlib
from pathlib import Path

import pytest

from autofit.budget import make_budget
from autofit.gpus import get_gpu
from autofit.models import resolve_model
from autofit.outputs import write_outputs
from autofit.probes import Probe, ProbeResult, ScreenedProbe, TraceProbe
from autofit.report import render_report
from autofit.results import recommend, trials_frame
from autofit.search import SearchPlan, open_study, run_search
from autofit.space import SearchSpace
from autofit.units import GIB
from autofit.trials import Outcome

from conftest import load_script

ROOT = Path(__file__).resolve().parents[1]
MODEL = resolve_model("glm-tiny")

shot = load_script("tools/screenshot_report.py")

_skip_without_chromium = pytest.mark.skipif(
    shot.find_chromium() is None, reason="Chromium not installed (apt-get install chromium); .ci/run installs it")


def needs_chromium(test):
    """Browser tests start Chromium (seconds each): slow, and skipped where Chromium is missing."""
    return pytest.mark.slow(_skip_without_chromium(test))


def space(**pins):
    """A space of the glm-tiny preset whose 224 configurations share 8 traced steps: ZeRO, offload and
    accumulation beyond 2 do not change what the trace probe traces (it caches the step), so a 100-trial search
    takes seconds. About a third of it runs out of memory at 1.2GB (0.14 GiB usable)."""
    knobs = {
        "per_device_train_batch_size": {"choices": [1, 16], "default": 1},
        "gradient_accumulation_steps": {"choices": [2, 4, 8, 16], "default": 4},
        "seq_len": {"choices": [512, 2048], "default": 512},
        "lora_rank": {"choices": [8], "default": 8},
        "quantization": {"choices": ["none", "nf4"], "default": "none"},
        "gradient_checkpointing": {"choices": [True], "default": True},
        "zero_stage": {"choices": [0, 1, 2, 3], "default": 0},
        "offload": {"choices": ["none", "optimizer", "all"], "default": "none"},
        "optimizer": {"choices": ["adamw_torch"], "default": "adamw_torch"},
        "attn_implementation": {"choices": ["sdpa"], "default": "sdpa"},
    }
    return SearchSpace.from_mapping(knobs, fallback=SearchSpace.load(), source="tests/test_report.py").pinned(pins)


def search(tmp, name, trials, probe=None, pins=None, seed=0):
    plan = SearchPlan(model=MODEL, space=space(**(pins or {})), pins=pins or {}, budget=make_budget("1.2GB"),
                      gpu=get_gpu("h100"), gpu_source="named", probe=probe or TraceProbe(), trials=trials,
                      storage=f"sqlite:///{tmp}/{name}.db", study_name=name, seed=seed)
    study = open_study(plan)
    run_search(plan, study)
    return study


class MeasuredStandIn(Probe):
    """Stands in for a real probe (a CPU or CUDA training run takes minutes): the trace's figures reported as
    measured, off by a fixed -5..+5% per configuration, so that the report shows predicted against measured."""

    name = "cpu"
    estimated = False

    def run(self, model, config, context):
        trace = TraceProbe().run(model, config, context)
        measured = trace.peak_memory_gib * (1 + (zlib.crc32(config.key().encode()) % 11 - 5) / 100)
        fits = measured * GIB <= context.usable_budget_bytes
        return ProbeResult(state=Outcome.OK if fits else Outcome.OOM, probe=self.name, estimated=False, peak_memory_gib=measured,
                           tokens_per_s=trace.tokens_per_s * 0.7, peak_allocated_gib=measured,
                           peak_reserved_gib=measured * 1.1, duration_s=trace.duration_s,
                           details={"runtime_reserve_bytes": int(0.5 * GIB)},  # as a cuda probe reports it
                           error=None if fits else "CUDA out of memory (stand-in)")


@pytest.fixture(scope="session")
def searched(tmp_path_factory):
    """A real 100-trial search and its outputs, written as every search writes them."""
    out = tmp_path_factory.mktemp("report100")
    study = search(out, "study", 100)
    write_outputs(study, out)
    return study, out / "report.html"


@pytest.fixture(scope="session")
def measured(tmp_path_factory):
    out = tmp_path_factory.mktemp("measured")
    study = search(out, "study", 10, probe=ScreenedProbe(MeasuredStandIn(), 0.10), seed=1)
    write_outputs(study, out)
    return study, out / "report.html"


@pytest.fixture(scope="session")
def nothing_fits(tmp_path_factory):
    """Every configuration of this pinned space runs out of memory: no recommendation, no front."""
    out = tmp_path_factory.mktemp("nofit")
    study = search(out, "study", 3, pins={"per_device_train_batch_size": 16, "seq_len": 2048})
    write_outputs(study, out)
    return study, out / "report.html"


def rows_of(page):
    return len(re.findall(r"<tr data-state=", page))


def figure_errors(page):
    return re.findall(r'<div class="note error">(.*?)</div>', page)


# ---- the page as HTML (no browser needed)


def test_report_of_a_real_search_holds_every_section(searched):
    study, path = searched
    page = path.read_text()
    frame = trials_frame(study)
    assert len(frame) >= 100 and rows_of(page) == len(frame)
    assert not figure_errors(page)
    # self-contained: plotly inlined once, nothing fetched
    assert "<script src" not in page and "<link" not in page and page.count('class="figure-spec"') >= 9
    order = [page.index(f"id='{s}'") for s in ("recommended", "pareto", "breakdown", "knobs", "history",
                                               "trials-section", "validation")]
    assert order == sorted(order)
    header = page[:page.index("id='recommended'")]
    for text in ("glm-tiny", "parameters", "glm · 2 layers", "1.2GB", "0.14 GiB", "NVIDIA H100", "trace",
                 "Trials by state", "optuna 5", "transformers"):
        assert text in header, text
    rec = recommend(study)
    assert f"#{rec.trial.number}" in page
    for name in ("best-config.yaml", "llamafactory.yaml", "hf_training_args.yaml"):
        assert name in page
    assert page.count('class="copy"') >= 3
    # trace numbers are estimates, said on the axes and in the table header
    assert "peak GPU memory (GiB) (estimated)" in page and "tokens/s (estimated)" in page
    assert "peak GiB (estimated)" in page
    assert "No real probe ran" in page


def test_deepspeed_file_when_the_recommendation_uses_zero(tmp_path):
    study = search(tmp_path, "zero", 2, pins={"zero_stage": 2, "offload": "optimizer", "seq_len": 512})
    page = render_report(study)
    assert recommend(study).config["zero_stage"] == 2
    assert "ds_config.json" in page and page.count('class="copy"') == 4
    # two trials: too few for importances, which say so instead of failing
    assert "Importances for tokens/s need at least three" in page
    assert not figure_errors(page)


def test_nothing_fits(nothing_fits):
    study, path = nothing_fits
    page = path.read_text()
    assert recommend(study) is None
    assert "No configuration fits the budget" in page and 'class="copy"' not in page
    assert rows_of(page) == len(trials_frame(study)) and not figure_errors(page)


def test_measured_study_compares_prediction_and_measurement(measured):
    study, path = measured
    page = path.read_text()
    frame = trials_frame(study)
    assert frame["predicted_peak_gib"].notna().any() and frame["peak_allocated_gib"].notna().any()
    assert "Peak memory: the trace&#x27;s prediction" in page or "the trace's prediction" in page
    assert "prediction error (%)" in page and "measured alloc GiB" in page
    assert set(frame["runtime_reserve_gib"].dropna()) == {0.5} and "runtime reserve GiB" in page
    assert 'class="badge meas"' in page
    assert not figure_errors(page)


def test_empty_study_renders(tmp_path):
    import optuna

    from autofit.search import DIRECTIONS

    study = optuna.create_study(directions=DIRECTIONS, storage=f"sqlite:///{tmp_path}/e.db", study_name="e")
    for key, value in {"model": "x</script><script>alert(1)</script>", "gpu_mem": "24GB", "usable_budget_gib": 21.8,
                       "probe": "trace", "estimated": True}.items():
        study.set_user_attr(key, value)
    page = render_report(study)
    assert "No configuration fits the budget" in page and rows_of(page) == 0 and not figure_errors(page)
    assert "<script>alert" not in page


def test_autofit_report_rebuilds_from_the_stored_study(searched, cli, tmp_path):
    import shutil

    study, path = searched
    shutil.copy(path.parent / "study.db", tmp_path / "study.db")  # the study alone, no other output
    proc = cli("report", tmp_path)
    assert proc.returncode == 0, proc.stderr
    page = (tmp_path / "report.html").read_text()
    assert rows_of(page) == len(trials_frame(study)) and not figure_errors(page)


# ---- in headless Chromium


@pytest.fixture(scope="module")
def browser():
    if shot.find_chromium() is None:
        pytest.skip("Chromium not installed (apt-get install chromium); .ci/run installs it")
    with shot.Browser(width=1280, height=900) as b:
        b.open(Path(__file__))  # any small local page: start the renderer
        yield b


def open_checked(browser, path):
    """Open a report from file://; return what the page shows. Fails on console errors and network use."""
    mark = len(browser.events)
    timing = browser.open(path)
    errors = browser.console_errors(since=mark)
    assert not errors, errors
    remote = [u for u in browser.requests(since=mark) if not u.startswith(("file:", "data:", "blob:", "about:"))]
    assert not remote, remote
    page = browser.evaluate("""(() => ({
      figures: Array.from(document.querySelectorAll('.js-plotly-plot')).filter(
        f => f.querySelector('svg.main-svg') && f.getBoundingClientRect().height > 100).length,
      rows: document.querySelectorAll('#trials tbody tr').length,
      copies: Array.from(document.querySelectorAll('button.copy')).filter(
        b => (document.getElementById(b.dataset.target) || {}).textContent).length,
      estimatedAxes: Array.from(document.querySelectorAll('.js-plotly-plot .g-ytitle, .js-plotly-plot .g-xtitle'))
        .filter(t => t.textContent.includes('(estimated)')).length,
    }))()""")
    page["timing"] = timing
    return page


@needs_chromium
def test_real_report_in_chromium(browser, searched):
    study, path = searched
    page = open_checked(browser, path)
    assert page["figures"] >= 5, page
    assert page["rows"] == len(trials_frame(study)) >= 100
    assert page["copies"] >= 3
    assert page["estimatedAxes"] >= 5
    # a click on a copy button puts its file on the clipboard
    browser.call("Browser.grantPermissions", {"permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]})
    x, y = browser.evaluate("""(() => { const b = document.querySelector('button.copy');
        b.scrollIntoView({block: 'center'}); const r = b.getBoundingClientRect();
        return [r.x + r.width / 2, r.y + r.height / 2]; })()""")
    for kind in ("mousePressed", "mouseReleased"):
        browser.call("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1})
    # the clipboard answers asynchronously; the button says "Copied" when it has
    assert browser.evaluate("""(async () => { const b = document.querySelector('button.copy');
        for (let i = 0; i < 50 && b.textContent !== 'Copied'; i++) await new Promise(r => setTimeout(r, 50));
        return b.textContent; })()""", await_promise=True) == "Copied"
    copied = browser.evaluate("navigator.clipboard.readText()", await_promise=True)
    assert copied == browser.evaluate("document.getElementById(document.querySelector('button.copy')"
                                      ".dataset.target).textContent")
    assert copied.startswith("# autofit recommendation") and "per_device_train_batch_size" in copied
    # the table sorts and filters
    first = browser.evaluate("""(() => { const th = Array.from(document.querySelectorAll('#trials thead tr.names th'))
        .find(h => h.textContent.startsWith('tokens/s')); th.click(); th.click();
        return document.querySelector('#trials tbody tr').cells[0].textContent; })()""")
    frame = trials_frame(study)
    assert frame.set_index("number").loc[int(first), "tokens_per_s"] == frame["tokens_per_s"].max()
    shown = browser.evaluate("""(() => { const box = Array.from(document.querySelectorAll('#state-filter input'))
        .find(b => b.value === 'ok'); box.click();
        return Array.from(document.querySelectorAll('#trials tbody tr')).filter(r => r.style.display !== 'none')
        .map(r => r.dataset.state); })()""")
    assert shown and Outcome.OK not in shown
    peaks = browser.evaluate("""(() => { document.querySelectorAll('#state-filter input').forEach(b => {
          if (!b.checked) b.click(); });
        const heads = Array.from(document.querySelectorAll('#trials thead tr.names th'));
        const col = heads.findIndex(h => h.textContent.startsWith('peak GiB'));
        const input = document.querySelector(`#trials thead tr.filters input[data-col="${col}"]`);
        input.value = '>0.1'; input.dispatchEvent(new Event('input'));
        return Array.from(document.querySelectorAll('#trials tbody tr')).filter(r => r.style.display !== 'none')
          .map(r => parseFloat(r.cells[col].dataset.v)); })()""")
    assert peaks and all(p > 0.1 for p in peaks)
    assert len(peaks) == int((frame["peak_memory_gib"] > 0.1).sum())


@needs_chromium
@pytest.mark.parametrize("which", ["measured", "nothing_fits"])
def test_other_reports_in_chromium(browser, which, request):
    study, path = request.getfixturevalue(which)
    page = open_checked(browser, path)
    assert page["rows"] == len(trials_frame(study))
    if which == "measured":
        assert page["figures"] >= 10 and page["copies"] >= 3
    else:
        assert page["figures"] >= 3 and page["copies"] == 0


@needs_chromium
def test_report_load_bench_times_a_100_trial_report(searched, capsys):
    """bench/report_load.py (the load-time benchmark; its figures are in docs/report.md) opens the 100-trial
    report in a fresh browser and waits for every figure. No time limit here: a shared CI machine's timing says
    little, so speed is the benchmark's business."""
    study, path = searched
    assert len(trials_frame(study)) >= 100
    bench = load_script("bench/report_load.py")
    assert bench.main(["--report", str(path), "--runs", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["runs"] == 1 and result["report_mb"] > 1 and result["figures_drawn"] >= 5
    timing = result["median_s"]
    assert all(timing[k] > 0 for k in ("paint", "load", "figures")), timing
    # plotly loads last: the header, the recommendation and the table paint before the figures draw
    assert timing["paint"] < timing["figures"], timing


@needs_chromium
def test_screenshot_script(searched, tmp_path):
    _, path = searched
    png = tmp_path / "report.png"
    assert shot.main([str(path), str(png), "--max-height", "3000"]) == 0
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1280, 3000)


def test_every_outcome_has_a_colour_found_by_its_stored_value():
    """The report's frame holds states as stored strings; the colours are keyed by Outcome (a str enum)."""
    from autofit.report.style import LIGHT_STATES, STATE_COLORS

    for outcome in Outcome:
        assert STATE_COLORS.get(outcome.value) == STATE_COLORS[outcome]
    assert LIGHT_STATES <= set(Outcome) and "lost" in LIGHT_STATES and "ok" not in LIGHT_STATES
