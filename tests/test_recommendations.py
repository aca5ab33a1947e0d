"""Issue 13: requirements first, the simplest of the fastest, concessions, the sequence-length curve, the user's own
trainer file in (`check`) and out (`search --from`), and seq_len from their data (`--data`)."""

import importlib.util
import json
import math
import sys

import optuna
import pandas as pd
import pytest
import yaml

from autofit.budget import make_budget
from autofit.concessions import TraceCache
from autofit.dataset_lengths import seq_len_from_data
from autofit.errors import AutofitError
from autofit.fixes import fewest_changes
from autofit.gpus import get_gpu
from autofit.knobs import KNOBS, knob_specs, moving_parts, neutral_knobs, requirement_knobs, TrainingConfig
from autofit.models import load_preset
from autofit.probes import ProbeContext
from autofit.requirements import resolve_requirements
from autofit.results import recommend
from autofit.seq_len_curve import GRANULARITY, longest_fitting
from autofit.space import SearchSpace
from autofit.trainer_files import apply_changes, changed_keys, read_trainer_file
from autofit.trials import Outcome, TrialAttr

TINY = load_preset("glm-tiny")
BASE = SearchSpace.load().default_config().to_dict()


# ---------------------------------------------------------------------------------------------------------------
# the two kinds of knobs


def test_knob_kinds_are_declared_once_in_knobs_yaml():
    assert set(requirement_knobs()) == {"seq_len", "lora_rank", "quantization"}
    assert set(neutral_knobs()) | set(requirement_knobs()) == set(KNOBS)
    assert all(knob_specs()[k].moving_parts is None for k in requirement_knobs())
    assert moving_parts({**BASE}) == {}
    assert moving_parts({**BASE, "zero_stage": 2, "offload": "optimizer"}) == {"zero_stage": 1, "offload": 1}
    assert moving_parts({**BASE, "optimizer": "paged_adamw_8bit"})["optimizer"] > \
        moving_parts({**BASE, "optimizer": "adamw_8bit"})["optimizer"]


def test_requirements_defaults_sources_and_conflicts():
    space = SearchSpace.load()
    req = resolve_requirements(space, {}, {}, None)
    assert req.values == {"seq_len": 2048, "lora_rank": 16, "quantization": "none"}
    assert set(req.sources.values()) == {"default"} and req.global_batch is None
    assert any("global batch any" in line for line in req.describe())
    req = resolve_requirements(space, {}, {"seq_len": (4096, "--seq-len")}, 32)
    assert req.values["seq_len"] == 4096 and req.explicit("seq_len") and not req.explicit("lora_rank")
    assert req.meets({**BASE, "seq_len": 4096, "per_device_train_batch_size": 4, "gradient_accumulation_steps": 8})
    assert not req.meets({**BASE, "seq_len": 4096, "per_device_train_batch_size": 4, "gradient_accumulation_steps": 4})
    with pytest.raises(AutofitError, match="contradicts"):
        resolve_requirements(space, {"seq_len": 1024}, {"seq_len": (4096, "--seq-len")}, None)
    with pytest.raises(AutofitError, match="needs LoRA"):
        resolve_requirements(space, {}, {"lora_rank": (0, "--lora-rank"), "quantization": ("nf4", "--quantization")},
                             None)


# ---------------------------------------------------------------------------------------------------------------
# the simplest of the fastest (a real in-memory Optuna storage; figures are made up, the rule is tested)


def _study(trials, requirements=None):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["maximize", "minimize"])
    if requirements is not None:
        study.set_user_attr("requirements", requirements.to_attrs())
    for config, tokens, peak in trials:
        study.add_trial(optuna.trial.create_trial(
            values=[tokens, peak], constraints={"memory": peak - 20.0},
            user_attrs={TrialAttr.STATE: Outcome.OK.value, TrialAttr.CONFIG: config, TrialAttr.ESTIMATED: True,
                        TrialAttr.PROBE: "trace"}))
    return study


def test_simplest_within_three_percent_of_the_fastest():
    req = resolve_requirements(SearchSpace.load(), {}, {}, None)
    zero = {**BASE, "zero_stage": 2, "offload": "optimizer"}
    plain = {**BASE, "per_device_train_batch_size": 2}
    paged = {**BASE, "optimizer": "paged_adamw_8bit", "per_device_train_batch_size": 4}
    short = {**BASE, "seq_len": 512}  # faster, but breaks the seq_len requirement
    study = _study([(zero, 1000.0, 10.0), (plain, 980.0, 12.0), (paged, 1010.0, 11.0), (short, 3000.0, 5.0)], req)
    rec = recommend(study)
    assert rec.config == plain  # within 3% of the fastest (paged, 1010) and nothing simpler
    assert rec.fastest_trial == 2 and "simplest within 3%" in rec.reason and "optimizer=paged_adamw_8bit" in rec.reason
    # beyond the noise the faster one wins, moving parts or not
    study = _study([(zero, 1000.0, 10.0), (plain, 900.0, 12.0)], req)
    assert recommend(study).config == zero
    # an older study without requirements: the fastest feasible trial, as before
    study = _study([(zero, 1000.0, 10.0), (plain, 990.0, 12.0), (short, 3000.0, 5.0)])
    assert recommend(study).config == short


def test_recommendation_meets_a_conceded_default_and_the_global_batch():
    req = resolve_requirements(SearchSpace.load(), {}, {}, 8)
    req.conceded = {"quantization": "nf4"}
    nf4 = {**BASE, "quantization": "nf4", "per_device_train_batch_size": 2, "gradient_accumulation_steps": 4}
    wrong_batch = {**nf4, "gradient_accumulation_steps": 8}
    study = _study([(nf4, 500.0, 8.0), (wrong_batch, 600.0, 9.0), ({**BASE}, 700.0, 10.0)], req)
    assert recommend(study).config == nf4


# ---------------------------------------------------------------------------------------------------------------
# the trace-based pieces on the tiny model (real transformers/peft/bitsandbytes traces)


def _cache(gib):
    budget = make_budget(gib, 0.0)
    return TraceCache(TINY, ProbeContext(usable_budget_bytes=budget.usable_bytes, gpu=get_gpu("rtx4090"), gpus=1))


def test_longest_fitting_seq_len_is_the_boundary():
    cache = _cache("1.2GB")
    config = TrainingConfig.from_dict({**BASE, "seq_len": 256, "gradient_accumulation_steps": 1,
                                       "per_device_train_batch_size": 4})
    longest, points = longest_fitting(cache, config, TINY.max_positions)
    assert longest is not None and longest % GRANULARITY == 0 and points
    assert cache.fits(config.replace(seq_len=longest))
    if longest < TINY.max_positions:  # the next step up does not fit, within the bisection's tolerance
        step = max(GRANULARITY, longest // 16)
        assert not cache.fits(config.replace(seq_len=longest + step + GRANULARITY))


def test_fewest_changes_fit_and_neutral_changes_come_first(tmp_path):
    cache = _cache("1.2GB")
    # what `check` reads from this file in test_check_command_exit_status_and_json: the two share their traces
    knobs = read_trainer_file(str(_write(tmp_path, "llamafactory", seq=4096, batch=16))).knobs
    big = TrainingConfig.from_dict({**BASE, **knobs})
    assert not cache.fits(big)
    fixes = fewest_changes(cache, big)
    assert fixes
    budget = make_budget("1.2GB", 0.0).usable_gib
    requirement_changes = []
    for fix in fixes:
        assert fix.peak_memory_gib <= budget
        assert cache.fits(big.replace(**fix.changes))
        requirement_changes.append(bool(set(fix.changes) & set(requirement_knobs())))
        if {"per_device_train_batch_size", "gradient_accumulation_steps"} <= set(fix.changes):  # global batch kept
            assert fix.changes["per_device_train_batch_size"] * fix.changes["gradient_accumulation_steps"] == 32
    assert requirement_changes == sorted(requirement_changes)  # quality-neutral fixes first


# ---------------------------------------------------------------------------------------------------------------
# trainer files in and out

LLAMAFACTORY = """### model
model_name_or_path: glm-tiny
trust_remote_code: true

### method
stage: sft
finetuning_type: lora
lora_rank: 16
lora_target: all   # every linear layer

### dataset
dataset: my_dataset
template: glm4
cutoff_len: {seq}

### train
output_dir: saves/mine
per_device_train_batch_size: {batch}
gradient_accumulation_steps: 2
learning_rate: 2.0e-4
"""

AXOLOTL = """base_model: glm-tiny
adapter: lora
lora_r: 16
lora_target_linear: true
datasets:
  - path: my/data
    type: alpaca
sequence_len: {seq}
micro_batch_size: {batch}
gradient_accumulation_steps: 2
gradient_checkpointing: true
learning_rate: 0.0002
output_dir: ./out
"""

HF = """output_dir: out/hf
per_device_train_batch_size: {batch}
gradient_accumulation_steps: 2
gradient_checkpointing: true
learning_rate: 2.0e-5
num_train_epochs: 1
"""


def _write(tmp_path, fmt, seq=512, batch=4):
    text = {"llamafactory": LLAMAFACTORY, "axolotl": AXOLOTL, "hf": HF}[fmt].format(seq=seq, batch=batch)
    path = tmp_path / f"{fmt}.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("fmt", ["llamafactory", "axolotl", "hf"])
def test_read_trainer_files(tmp_path, fmt):
    trainer = read_trainer_file(str(_write(tmp_path, fmt, seq=768, batch=4)))
    assert trainer.format == fmt
    knobs = trainer.knobs
    assert knobs["per_device_train_batch_size"] == 4 and knobs["gradient_accumulation_steps"] == 2
    if fmt == "hf":  # TrainingArguments alone: full fine-tuning, TRL's max_length default
        assert knobs["lora_rank"] == 0 and knobs["seq_len"] == 1024 and trainer.model_ref is None
    else:
        assert knobs["lora_rank"] == 16 and knobs["seq_len"] == 768 and trainer.model(None).name == "glm-tiny"
    assert knobs["quantization"] == "none" and knobs["zero_stage"] == 0


def test_deepspeed_config_named_by_the_file(tmp_path):
    (tmp_path / "ds.json").write_text(json.dumps({"zero_optimization": {"stage": 3, "offload_optimizer": {
        "device": "cpu"}, "offload_param": {"device": "cpu"}}}))
    path = _write(tmp_path, "llamafactory")
    path.write_text(path.read_text() + "deepspeed: ds.json\nquantization_bit: 4\n")
    knobs = read_trainer_file(str(path)).knobs
    assert (knobs["zero_stage"], knobs["offload"], knobs["quantization"]) == (3, "all", "nf4")


def test_write_back_keeps_every_other_key_and_marks_changes(tmp_path):
    trainer = read_trainer_file(str(_write(tmp_path, "llamafactory", seq=512, batch=4)))
    config = {**trainer.knobs, "per_device_train_batch_size": 2, "gradient_accumulation_steps": 4,
              "quantization": "nf4", "gradient_checkpointing": False}
    keys = changed_keys(trainer, config, None)
    text = apply_changes(trainer, keys, "test")
    data = yaml.safe_load(text)
    for key in ("dataset", "template", "learning_rate", "output_dir", "lora_target", "stage", "cutoff_len"):
        assert data[key] == trainer.data[key]
    assert data["per_device_train_batch_size"] == 2 and data["quantization_bit"] == 4
    assert data["disable_gradient_checkpointing"] is True
    assert "per_device_train_batch_size: 2  # autofit: was 4" in text
    assert "lora_target: all   # every linear layer" in text  # the user's comments stay
    assert "# autofit: added" in text


def test_bad_trainer_files(tmp_path):
    with pytest.raises(AutofitError, match="not found"):
        read_trainer_file(str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("cutoff_len: [1, 2\n")
    with pytest.raises(AutofitError, match="malformed"):
        read_trainer_file(str(bad))
    bad.write_text("finetuning_type: freeze\nmodel_name_or_path: glm-tiny\n")
    with pytest.raises(AutofitError, match="freeze"):
        read_trainer_file(str(bad))


def _json_or_fail(proc):
    assert proc.returncode in (0, 1), proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize("fmt", ["llamafactory", "axolotl", "hf"])
def test_check_command_exit_status_and_json(cli, tmp_path, fmt):
    extra = ["--model", "glm-tiny"] if fmt == "hf" else []
    fits = cli("check", _write(tmp_path, fmt, seq=256, batch=1), "--gpu-mem", "2GB", "--json", *extra)
    data = _json_or_fail(fits)
    assert fits.returncode == 0 and data["fits"] is True
    assert set(data) == {"fits", "peak_memory_gib", "usable_budget_gib", "config", "suggestions"}
    assert data["suggestions"] == [] and data["peak_memory_gib"] <= data["usable_budget_gib"]
    big = cli("check", _write(tmp_path, fmt, seq=4096, batch=16), "--gpu-mem", "1.2GB", "--json", *extra)
    data = _json_or_fail(big)
    assert big.returncode == 1 and data["fits"] is False and data["peak_memory_gib"] > data["usable_budget_gib"]
    assert 1 <= len(data["suggestions"]) <= 3
    for suggestion in data["suggestions"]:
        assert set(suggestion) == {"changes", "peak_memory_gib", "tokens_per_s"} and suggestion["changes"]
        assert suggestion["peak_memory_gib"] <= data["usable_budget_gib"] and suggestion["tokens_per_s"] > 0


def test_check_command_text_and_bad_input(cli, tmp_path):
    proc = cli("check", _write(tmp_path, "llamafactory", seq=4096, batch=16), "--gpu-mem", "1.2GB")
    assert proc.returncode == 1 and "does not fit" in proc.stdout and "Fewest changes" in proc.stdout
    for args in ([tmp_path / "nope.yaml", "--gpu-mem", "24GB"],
                 [_write(tmp_path, "llamafactory"), "--gpu-mem", "lots"],
                 [_write(tmp_path, "hf"), "--gpu-mem", "24GB"]):  # an HF file names no model
        proc = cli("check", *args)
        assert proc.returncode == 2, proc.stdout
        assert proc.stderr.startswith("autofit: error: ") and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("fmt", ["llamafactory", "axolotl", "hf"])
def test_search_from_writes_the_users_file_back(cli, tmp_path, fmt):
    source = _write(tmp_path, fmt, seq=512, batch=4)
    out = tmp_path / "out"
    extra = ["--model", "glm-tiny"] if fmt == "hf" else []
    proc = cli("search", "--from", source, "--gpu-mem", "1.2GB", "--trials", "6", "--out", out, *extra)
    assert proc.returncode == 0, proc.stderr
    name = {"llamafactory": "llamafactory.yaml", "axolotl": "axolotl.yaml", "hf": "hf_training_args.yaml"}[fmt]
    written = (out / name).read_text()
    data = yaml.safe_load(written)
    original = yaml.safe_load(source.read_text())
    best = yaml.safe_load((out / "best-config.yaml").read_text())
    # the file's settings are the requirements: seq_len, rank, quantization and global batch are kept
    seq = 1024 if fmt == "hf" else 512  # a TrainingArguments file states no length: TRL's max_length default
    assert best["config"]["seq_len"] == seq and best["requirements"]["seq_len"]["source"].startswith("--from")
    assert best["config"]["per_device_train_batch_size"] * best["config"]["gradient_accumulation_steps"] == 8
    for key, value in original.items():  # every key is kept or marked as changed
        assert data.get(key) == value or f"{key}: " in written and "# autofit:" in written, key
    assert "Your file as it is: peak" in proc.stdout
    batch_key = "micro_batch_size" if fmt == "axolotl" else "per_device_train_batch_size"
    assert data[batch_key] == best["config"]["per_device_train_batch_size"]
    if fmt == "hf":  # the real parser: transformers' own TrainingArguments
        from transformers import HfArgumentParser, TrainingArguments

        (args,) = HfArgumentParser(TrainingArguments).parse_dict(data)
        assert args.per_device_train_batch_size == best["config"]["per_device_train_batch_size"]
    elif fmt == "llamafactory" and importlib.util.find_spec("llamafactory") is not None:  # where it installs
        from llamafactory.hparams.parser import get_train_args

        get_train_args(data)
    elif fmt == "axolotl" and importlib.util.find_spec("axolotl") is not None:
        from axolotl.utils.schemas.config import AxolotlInputConfig

        AxolotlInputConfig(**data)


# ---------------------------------------------------------------------------------------------------------------
# --data


def _alpaca(tmp_path, words):
    rows = [{"instruction": " ".join(["hello"] * n), "input": "", "output": "world"} for n in words]
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_data_without_a_tokenizer_counts_characters(tmp_path):
    path = _alpaca(tmp_path, [10, 100, 400])
    found = seq_len_from_data(str(path), TINY)
    longest_chars = len("\n".join([" ".join(["hello"] * 400), "world"]))
    assert found.seq_len == math.ceil(longest_chars / 3.5) and found.layout == "alpaca"
    assert "characters / 3.5" in found.statement and "longest sample" in found.statement


def test_data_layouts_and_formats(tmp_path):
    sharegpt = tmp_path / "chat.json"
    sharegpt.write_text(json.dumps([{"conversations": [{"from": "human", "value": "a" * 70},
                                                       {"from": "gpt", "value": "b" * 35}]}]))
    found = seq_len_from_data(str(sharegpt), TINY)
    assert found.layout == "sharegpt" and found.seq_len == math.ceil(106 / 3.5)
    csv_path = tmp_path / "t.csv"
    csv_path.write_text("text\n" + "x" * 350 + "\n")
    assert seq_len_from_data(str(csv_path), TINY).seq_len == 100
    with pytest.raises(AutofitError, match="truncate-share"):
        seq_len_from_data(str(csv_path), TINY, truncate_share=1.5)


def test_data_parquet_with_pyarrow(tmp_path):
    path = tmp_path / "t.parquet"
    pd.DataFrame({"text": ["x" * 35, "y" * 700]}).to_parquet(path)
    assert seq_len_from_data(str(path), TINY).seq_len == 200


def _save_to_disk_folder(folder, rows):
    """A folder laid out as datasets' Dataset.save_to_disk writes it: Arrow IPC stream shards plus
    dataset_info.json and state.json (built with pyarrow, which datasets itself uses)."""
    import pyarrow as pa

    folder.mkdir()
    table = pa.Table.from_pylist(rows)
    shard = "data-00000-of-00001.arrow"
    with pa.OSFile(str(folder / shard), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    features = {name: {"dtype": "string", "_type": "Value"} for name in table.column_names}
    (folder / "dataset_info.json").write_text(json.dumps({"citation": "", "description": "", "features": features,
                                                          "homepage": "", "license": ""}))
    (folder / "state.json").write_text(json.dumps({"_data_files": [{"filename": shard}], "_fingerprint": "0" * 16,
                                                   "_format_columns": None, "_format_kwargs": {},
                                                   "_format_type": None, "_output_all_columns": False,
                                                   "_split": "train"}))
    return folder


def test_data_saved_dataset_folder_alpaca(tmp_path):
    rows = [{"instruction": "x" * 35, "input": "", "output": "y" * 35},
            {"instruction": "x" * 350, "input": "z" * 350, "output": "y" * 350}]
    folder = _save_to_disk_folder(tmp_path / "saved", rows)
    found = seq_len_from_data(str(folder), TINY)
    assert found.seq_len >= 1050 // 3.5 and found.seq_len < 2 * 1050 // 3.5  # the longest sample, by characters
    assert seq_len_from_data(str(folder), TINY, truncate_share=0.5).seq_len < found.seq_len


def test_data_parquet_and_saved_dataset_without_pyarrow(tmp_path, monkeypatch):
    parquet = tmp_path / "t.parquet"
    pd.DataFrame({"text": ["x" * 35]}).to_parquet(parquet)
    folder = _save_to_disk_folder(tmp_path / "saved", [{"text": "x" * 35}])
    for module in ("pyarrow", "pyarrow.parquet", "fastparquet"):  # as if not installed: import raises ImportError
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(AutofitError, match="pyarrow"):
        seq_len_from_data(str(parquet), TINY)
    with pytest.raises(AutofitError, match="pyarrow or datasets"):
        seq_len_from_data(str(folder), TINY)


def _local_model_with_tokenizer(tmp_path):
    """A model folder with a word-level tokenizer built locally with the `tokenizers` package."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    folder = tmp_path / "tiny-with-tokenizer"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(TINY.config))
    vocab = {"[UNK]": 0, "hello": 1, "world": 2}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "PreTrainedTokenizerFast",
                                                              "unk_token": "[UNK]"}))
    return folder


def test_data_with_the_models_tokenizer(tmp_path):
    from autofit.models import resolve_model

    model = resolve_model(str(_local_model_with_tokenizer(tmp_path)))
    path = _alpaca(tmp_path, [10, 100, 299])
    found = seq_len_from_data(str(path), model)
    assert found.seq_len == 300 and "the tokenizer of" in found.statement  # 299 x hello + world
    share = seq_len_from_data(str(path), model, truncate_share=0.34)
    assert share.seq_len == 101 and "--truncate-share" in share.statement


def test_search_data_sets_and_states_seq_len(cli, tmp_path):
    model = _local_model_with_tokenizer(tmp_path)
    data = _alpaca(tmp_path, [10, 299])
    out = tmp_path / "out"
    proc = cli("search", "--model", model, "--gpu-mem", "1.2GB", "--data", data, "--trials", "4", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "seq_len 300 from --data" in proc.stdout.replace("\n", " ")
    best = yaml.safe_load((out / "best-config.yaml").read_text())
    assert best["config"]["seq_len"] == 300 and best["requirements"]["seq_len"]["source"] == f"--data {data}"
    proc = cli("search", "--model", model, "--gpu-mem", "1.2GB", "--truncate-share", "0.1", "--out", tmp_path / "x")
    assert proc.returncode == 2 and "needs --data" in proc.stderr


# ---------------------------------------------------------------------------------------------------------------
# conceding a default requirement (glm4-9b on 24 GB: bf16 LoRA fits only with DeepSpeed offload)


def _glm4_plan_maker(req):
    from autofit.probes import TraceProbe
    from autofit.search import SearchPlan

    model, budget, space = load_preset("glm4-9b"), make_budget("24GB", None), SearchSpace.load()

    def make_plan(pins):
        return SearchPlan(model=model, space=space.pinned(pins), pins=pins, budget=budget, gpu=get_gpu("rtx4090"),
                          gpu_source="test", probe=TraceProbe(), trials=1, storage="sqlite://", study_name="t")
    return make_plan


def test_default_quantization_is_conceded_only_when_bf16_needs_deepspeed():
    from autofit.advice import plan_with_requirements
    from autofit.search import check_budget_reachable

    space = SearchSpace.load()
    values = {k: space.values[k] for k in requirement_knobs()}
    req = resolve_requirements(space, {}, {}, None)
    plan = plan_with_requirements(_glm4_plan_maker(req), req, check_budget_reachable, values)
    assert req.conceded == {"quantization": "nf4"} and plan.pins["quantization"] == "nf4"
    assert plan.pins["seq_len"] == 2048 and plan.pins["lora_rank"] == 16  # never shortened, never cut
    assert any("conceded: nf4" in line for line in req.describe())
    explicit = resolve_requirements(space, {}, {"quantization": ("none", "--quantization")}, None)
    plan = plan_with_requirements(_glm4_plan_maker(explicit), explicit, check_budget_reachable, values)
    assert explicit.conceded == {} and plan.pins["quantization"] == "none"
    # given explicitly, bf16 stays: only DeepSpeed offload makes it fit, so the search keeps ZeRO in its space
    assert {c.zero_stage for c in plan.candidates.configs} >= {2, 3}


def test_json_trainer_file_is_written_back_as_json(tmp_path):
    path = tmp_path / "args.json"
    path.write_text(json.dumps({"output_dir": "o", "per_device_train_batch_size": 8, "learning_rate": 3e-5}))
    trainer = read_trainer_file(str(path))
    assert trainer.is_json and trainer.format == "hf"
    text = apply_changes(trainer, changed_keys(trainer, {**trainer.knobs, "per_device_train_batch_size": 2,
                                                         "gradient_accumulation_steps": 4}, None), "test")
    assert json.loads(text) == {"output_dir": "o", "per_device_train_batch_size": 2, "learning_rate": 3e-5,
                                "gradient_accumulation_steps": 4}


def test_search_from_probes_the_users_configuration_first(cli, tmp_path):
    source = _write(tmp_path, "llamafactory", seq=512, batch=4)
    out = tmp_path / "out"
    proc = cli("search", "--from", source, "--gpu-mem", "1.2GB", "--trials", "3", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "enqueued as the search's first trial" in proc.stdout
    assert "Your file's configuration was probed as trial 0: ok" in proc.stdout
    first = pd.read_csv(out / "trials.csv").sort_values("number").iloc[0]
    theirs = read_trainer_file(str(source)).knobs
    for knob in ("per_device_train_batch_size", "gradient_accumulation_steps", "seq_len", "lora_rank",
                 "gradient_checkpointing", "optimizer"):
        assert first[knob] == theirs[knob], knob
    again = cli("search", "--from", source, "--gpu-mem", "1.2GB", "--trials", "4", "--out", out)  # resumed
    assert again.returncode == 0, again.stderr
    assert "already in the study (trial 0)" in again.stdout
    rows = pd.read_csv(out / "trials.csv")
    assert len(rows[(rows["per_device_train_batch_size"] == 4) & (rows["gradient_accumulation_steps"] == 2)]) == 1
