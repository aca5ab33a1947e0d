"""The requirement options of `search` (--seq-len, --lora-rank, --quantization, --data, --truncate-share, --from)
turned into requirement values with their sources, for autofit.requirements.resolve_requirements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import AutofitError
from ..trainer_files import TrainerFile, read_trainer_file


@dataclass
class RequirementInputs:
    given: dict[str, tuple[Any, str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    global_batch: int | None = None
    global_batch_source: str = "--global-batch"
    trainer: TrainerFile | None = None
    model: str | None = None


def requirement_inputs(model: str | None, seq_len: int | None, lora_rank: int | None, quantization: str | None,
                       data: str | None, truncate_share: float | None, from_file: str | None,
                       global_batch: int | None, gpus: int) -> RequirementInputs:
    """Flags win over --data, which wins over --from FILE's own values."""
    inputs = RequirementInputs(global_batch=global_batch, model=model)
    if truncate_share is not None and data is None:
        raise AutofitError("--truncate-share needs --data")
    if data is not None and seq_len is not None:
        raise AutofitError("give --seq-len or --data, not both")
    if from_file is not None:
        trainer = read_trainer_file(from_file)
        inputs.trainer = trainer
        from ..models import preset_names

        spec = trainer.model(model)  # a preset by name or hub id, a folder, or a cached hub id
        inputs.model = spec.name if spec.name in preset_names() else spec.hf_ref
        for knob in ("seq_len", "lora_rank", "quantization"):
            key = trainer.stated.get(knob)
            origin = f"--from {trainer.path.name}"
            where = f"{origin}: {key}" if key else f"{origin}: {trainer.format}'s default"
            inputs.given[knob] = (trainer.knobs[knob], where)
        if global_batch is None:
            inputs.global_batch = trainer.global_batch * gpus
            batch, accumulation = (trainer.knobs["per_device_train_batch_size"],
                                   trainer.knobs["gradient_accumulation_steps"])
            inputs.global_batch_source = (f"--from {trainer.path.name}: batch {batch}"
                                          f" x accumulation {accumulation} x {gpus} GPU(s)")
        inputs.notes += [f"{trainer.path.name}: {note}" for note in trainer.notes]
    if inputs.model is None:
        raise AutofitError("--model is required (or --from a trainer file that names one)")
    if data is not None:
        from ..dataset_lengths import seq_len_from_data
        from ..models import resolve_model

        found = seq_len_from_data(data, resolve_model(inputs.model) if inputs.trainer is None
                                  else inputs.trainer.model(model), truncate_share)
        inputs.given["seq_len"] = (found.seq_len, f"--data {data}")
        inputs.notes.append(found.statement)
    if seq_len is not None:
        inputs.given["seq_len"] = (seq_len, "--seq-len")
    if lora_rank is not None:
        inputs.given["lora_rank"] = (lora_rank, "--lora-rank")
    if quantization is not None:
        inputs.given["quantization"] = (quantization, "--quantization")
    if lora_rank == 0 and quantization is None and inputs.given.get("quantization", ("none",))[0] != "none":
        inputs.given["quantization"] = ("none", "--lora-rank 0 (full fine-tuning trains bf16 weights)")
    return inputs
