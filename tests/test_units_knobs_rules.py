import pytest

from autofit import AutofitError, TrainingConfig
from autofit.knobs import KNOBS, knob_specs, parse_assignment
from autofit.models import resolve_model
from autofit.rules import check_valid, rules, violated_rule
from autofit.space import SearchSpace
from autofit.units import GIB, parse_size, size_label


@pytest.mark.parametrize("text,gib", [("24GB", 24), ("24GiB", 24), ("24G", 24), ("80gb", 80), ("16384MiB", 16),
                                      ("24576MB", 24), ("1.5GB", 1.5), ("1TB", 1024)])
def test_sizes_are_binary(text, gib):
    assert parse_size(text) == int(gib * GIB)


@pytest.mark.parametrize("text", ["", "24", "24XB", "GB", "-4GB", "0GB", "24 G B", "two GB"])
def test_malformed_or_non_positive_sizes_are_refused(text):
    if text == "24":  # a bare number means GiB
        assert parse_size(text) == 24 * GIB
        return
    with pytest.raises(AutofitError):
        parse_size(text)


def test_size_label_normalises():
    assert size_label("24576MB") == "24GB"
    assert size_label("24gb") == "24GB"


def test_knob_names_are_defined_once():
    assert KNOBS == tuple(knob_specs())
    assert KNOBS == ("per_device_train_batch_size", "gradient_accumulation_steps", "seq_len", "lora_rank",
                     "quantization", "gradient_checkpointing", "zero_stage", "offload", "optimizer",
                     "attn_implementation", "allocator")


def test_knob_facts_come_from_knobs_yaml():
    from autofit.commands._common import SHORT, fmt_config
    from autofit.knobs import short_labels, traced_config

    assert SHORT == short_labels() == {n: s.short for n, s in knob_specs().items() if s.short}
    assert all(isinstance(label, str) for label in SHORT.values()) and len(set(SHORT.values())) == len(SHORT)
    assert fmt_config({"offload": "all", "allocator": "expandable"}) == "off=all allocator=expandable"
    config = SearchSpace.load().default_config().replace(gradient_accumulation_steps=16, zero_stage=3, offload="all",
                                                         allocator="expandable", lora_rank=8)
    traced = traced_config(config)
    assert (traced.gradient_accumulation_steps, traced.zero_stage, traced.offload, traced.allocator) == \
        (2, 0, "none", "default")
    assert traced.replace(gradient_accumulation_steps=16, zero_stage=3, offload="all", allocator="expandable") == config
    assert traced_config(config.replace(gradient_accumulation_steps=1)).gradient_accumulation_steps == 1
    assert config.lora_alpha == 16 and config.replace(lora_rank=0).lora_alpha == 0
    older = {k: v for k, v in config.to_dict().items() if k != "allocator"}  # stored before the knob existed
    assert TrainingConfig.from_dict(older).allocator == knob_specs()["allocator"].stored_default == "default"


@pytest.mark.parametrize("text,expected", [("seq_len=5789", ("seq_len", 5789)), ("quantization=nf4", ("quantization", "nf4")),
                                           ("gradient_checkpointing=false", ("gradient_checkpointing", False)),
                                           ("zero_stage=3", ("zero_stage", 3)), ("lora_rank=0", ("lora_rank", 0))])
def test_set_parses_values(text, expected):
    assert parse_assignment(text) == expected


@pytest.mark.parametrize("text,fragment", [("quantization=fp3", "not one of"), ("per_device_train_batch_size=two", "integer"),
                                           ("per_device_train_batch_size=0", "at least 1"), ("colour=red", "unknown knob"),
                                           ("seq_len", "KNOB=VALUE"), ("zero_stage=5", "not one of"),
                                           ("gradient_checkpointing=maybe", "true or false")])
def test_set_rejects_bad_values(text, fragment):
    with pytest.raises(AutofitError, match=fragment):
        parse_assignment(text)


def _config(**changes):
    return SearchSpace.load().default_config().replace(**changes)


FACTS = {"max_position_embeddings": 4096, "num_hidden_layers": 2}


@pytest.mark.parametrize("changes,rule", [
    (dict(quantization="nf4", lora_rank=0), "quantization_needs_lora"),
    (dict(quantization="int8", zero_stage=3), "int8_not_with_zero3"),
    (dict(offload="optimizer", zero_stage=1), "offload_needs_zero2"),
    (dict(offload="all", zero_stage=2), "offload_all_needs_zero3"),
    (dict(zero_stage=2, optimizer="adamw_8bit"), "zero_needs_adamw_torch"),
    (dict(seq_len=8192), "seq_len_within_max_positions"),
])
def test_each_rule_fires(changes, rule):
    assert violated_rule(_config(**changes), FACTS).name == rule


@pytest.mark.parametrize("changes", [dict(), dict(quantization="nf4"), dict(zero_stage=3, offload="all", lora_rank=0),
                                     dict(zero_stage=2, offload="optimizer"), dict(quantization="nf4", zero_stage=3)])
def test_valid_combinations_pass(changes):
    assert violated_rule(_config(**changes), FACTS) is None


def test_rules_are_data_with_names():
    names = [r.name for r in rules()]
    assert len(names) == len(set(names)) >= 6


def test_invalid_config_error_names_rule():
    with pytest.raises(AutofitError, match="quantization_needs_lora"):
        check_valid(_config(quantization="int8", lora_rank=0), FACTS)


def test_training_config_rejects_unknown_and_missing():
    values = _config().to_dict()
    with pytest.raises(AutofitError, match="unknown knob"):
        TrainingConfig.from_dict({**values, "colour": 1})
    values.pop("seq_len")
    with pytest.raises(AutofitError, match="lacks knob"):
        TrainingConfig.from_dict(values)


def test_memory_ranks_follow_the_data():
    specs = knob_specs()
    assert specs["lora_rank"].memory_rank(0) > specs["lora_rank"].memory_rank(64)
    assert specs["quantization"].memory_rank("nf4") < specs["quantization"].memory_rank("int8") < specs["quantization"].memory_rank("none")
    assert specs["gradient_accumulation_steps"].memory_rank(8) == specs["gradient_accumulation_steps"].memory_rank(2)
    assert specs["zero_stage"].memory_rank(3) is None


def test_model_max_positions_feed_rules():
    tiny = resolve_model("glm-tiny")
    assert tiny.facts["max_position_embeddings"] == 4096
