"""Render autofit's recommended configuration for other trainers.

Pure functions only: every renderer returns text (or a dict for the DeepSpeed
config) and never touches the file system; the caller writes files atomically.

Formats
-------
``llamafactory``  YAML for ``llamafactory-cli train``. LLaMA-Factory parses the
                  file with ``HfArgumentParser(...).parse_dict(allow_extra_keys=False)``
                  (src/llamafactory/hparams/parser.py) and rejects unknown keys,
                  so only argument names from its hparams dataclasses
                  (model_args.py, data_args.py, finetuning_args.py,
                  training_args.py = Seq2SeqTrainingArguments + a few) are
                  emitted; autofit's own figures go in comments.
``hf``            YAML whose top-level keys are all ``transformers.TrainingArguments``
                  fields, so ``TrainingArguments(**yaml.safe_load(text))`` works.
                  Model loading / LoRA / quantization (not owned by
                  TrainingArguments) is shown as commented Python.
``deepspeed``     ``ds_config.json`` modelled on LLaMA-Factory's
                  examples/deepspeed/ds_z{0,2,3}{,_offload}_config.json, with the
                  batch/clipping/precision values left as ``"auto"`` so the
                  Hugging Face Trainer integration fills them in from the
                  trainer arguments (no risk of a mismatch error). Only that
                  integration resolves "auto" (``deepspeed.initialize`` on the
                  file raises a TypeError), so this format also writes
                  ``ds_config.resolved.json``: the same config with every value
                  filled in as the integration fills it, for plain DeepSpeed
                  scripts (the trainer formats say so in a comment).
``axolotl``       YAML for ``axolotl train`` (keys from
                  src/axolotl/utils/schemas/*.py, axolotl 0.19).

``ExportContext.config`` is a ``TrainingConfig`` (autofit/knobs.py; the knobs are defined
in data/knobs.yaml), or a mapping of knob name -> value as a study stores it (checked and
turned into one; unknown extra knobs are ignored, a missing ``allocator`` is "default").

Modules: _context (ExportContext, the knobs checked), _yaml (the YAML writer), _comments
(the comment header shared by the trainer formats), deepspeed, llamafactory, hf, axolotl.
"""

from __future__ import annotations

from ._context import (ALLOC_ENV, DS_FILENAME, DS_RESOLVED_FILENAME, FORMATS, HF_OPTIMIZERS, ExportContext,
                       needs_remote_code)
from .axolotl import render_axolotl
from .deepspeed import deepspeed_config, render_deepspeed, render_deepspeed_resolved, resolved_deepspeed_config
from .hf import render_hf
from .llamafactory import render_llamafactory

__all__ = [
    "ALLOC_ENV",
    "DS_FILENAME",
    "DS_RESOLVED_FILENAME",
    "FORMATS",
    "HF_OPTIMIZERS",
    "ExportContext",
    "deepspeed_config",
    "needs_remote_code",
    "render",
    "render_axolotl",
    "render_deepspeed",
    "render_deepspeed_resolved",
    "resolved_deepspeed_config",
    "render_hf",
    "render_llamafactory",
]


def render(fmt: str, ctx: ExportContext) -> dict[str, str]:
    """filename -> text for one format (ds_config.json added when ZeRO is used)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; valid formats: {', '.join(FORMATS)}")
    if fmt == "deepspeed":
        return {DS_FILENAME: render_deepspeed(ctx), DS_RESOLVED_FILENAME: render_deepspeed_resolved(ctx)}
    renderer, filename = {
        "llamafactory": (render_llamafactory, "llamafactory.yaml"),
        "hf": (render_hf, "hf_training_args.yaml"),
        "axolotl": (render_axolotl, "axolotl.yaml"),
    }[fmt]
    files = {filename: renderer(ctx)}
    if deepspeed_config(ctx) is not None:
        files[DS_FILENAME] = render_deepspeed(ctx)
    return files
