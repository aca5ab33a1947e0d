import pytest

from autofit import AutofitError
from autofit.candidates import build_candidates
from autofit.knobs import KNOBS
from autofit.space import SearchSpace, builtin_space_path

FACTS = {"max_position_embeddings": 131072, "num_hidden_layers": 40}


def test_shipped_spaces_load_and_cover_every_knob():
    for name in ("default.yaml", "full.yaml"):
        space = SearchSpace.load(builtin_space_path(name))
        assert set(space.values) == set(KNOBS)
        assert space.default_config()


def test_default_space_is_lora_and_full_space_is_full_finetuning():
    default = SearchSpace.load()
    assert 0 not in default.values["lora_rank"] and "nf4" in default.values["quantization"]
    full = SearchSpace.load(builtin_space_path("full.yaml"))
    assert full.values["lora_rank"] == (0,) and set(full.values["zero_stage"]) == {0, 1, 2, 3}


def test_log_range_is_a_doubling_grid(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("knobs:\n  per_device_train_batch_size: {low: 1, high: 20, log: true, default: 1}\n"
                    "  seq_len: {low: 512, high: 1536, step: 512, default: 512}\n")
    space = SearchSpace.load(path)
    assert space.values["per_device_train_batch_size"] == (1, 2, 4, 8, 16)
    assert space.values["seq_len"] == (512, 1024, 1536)
    # knobs the file leaves out take the default space's defaults
    assert space.values["quantization"] == (SearchSpace.load().defaults["quantization"],)


def test_pin_outside_the_list_is_fine():
    space = SearchSpace.load().pinned({"seq_len": 5789, "quantization": "nf4"})
    assert space.values["seq_len"] == (5789,)
    cands = build_candidates(space, FACTS)
    assert {c.seq_len for c in cands.configs} == {5789}
    assert "seq_len" not in cands.searched


@pytest.mark.parametrize("text,fragment", [
    ("knobs: [", "malformed space file"),
    ("nothing: 1\n", "knobs"),
    ("knobs:\n  colour: {choices: [1], default: 1}\n", "unknown knob"),
    ("knobs:\n  seq_len: {choices: [512]}\n", "no default"),
    ("knobs:\n  quantization: {choices: [fp3], default: fp3}\n", "not one of"),
    ("knobs:\n  seq_len: {low: 100, high: 50, default: 100}\n", "below low"),
    ("knobs:\n  seq_len: 512\n", "choices"),
])
def test_bad_space_files(tmp_path, text, fragment):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(AutofitError, match=fragment):
        SearchSpace.load(path)


def test_missing_space_file(tmp_path):
    with pytest.raises(AutofitError, match="not found"):
        SearchSpace.load(tmp_path / "nope.yaml")


def test_candidates_drop_invalid_and_respect_global_batch():
    full = SearchSpace.load(builtin_space_path("full.yaml"))
    cands = build_candidates(full, FACTS)
    for c in cands.configs:
        assert not (c.offload != "none" and c.zero_stage < 2)
        assert not (c.offload == "all" and c.zero_stage != 3)
    batch = build_candidates(SearchSpace.load(), FACTS, gpus=2, global_batch=32)
    assert batch.configs and all(c.per_device_train_batch_size * c.gradient_accumulation_steps * 2 == 32
                                 for c in batch.configs)


def test_global_batch_unreachable_is_an_error():
    space = SearchSpace.load().pinned({"per_device_train_batch_size": 4})
    with pytest.raises(AutofitError, match="global-batch"):
        build_candidates(space, FACTS, global_batch=6)


def test_all_invalid_space_names_the_rule():
    space = SearchSpace.load().pinned({"lora_rank": 0, "quantization": "nf4"})
    with pytest.raises(AutofitError, match="quantization_needs_lora"):
        build_candidates(space, FACTS)


def test_dominance_and_minimal():
    cands = build_candidates(SearchSpace.load(), FACTS)
    minimal = cands.minimal()
    # knobs without a memory order (zero_stage, allocator) split the space: one cheapest config per group
    groups = {(cands.configs[i].zero_stage, cands.configs[i].allocator) for i in minimal}
    assert len(minimal) == len(groups) == 6
    for index in minimal:
        smallest = cands.configs[index]
        assert (smallest.per_device_train_batch_size, smallest.seq_len, smallest.lora_rank, smallest.quantization,
                smallest.gradient_checkpointing, smallest.attn_implementation) == (1, 512, 8, "nf4", True, "sdpa")
        bigger = cands.at_least_as_large_as(index)
        same_group = [(c.zero_stage, c.allocator) == (smallest.zero_stage, smallest.allocator) for c in cands.configs]
        assert bigger.tolist() == same_group  # everything in its group needs at least as much
