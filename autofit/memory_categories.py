"""The kinds of GPU memory a peak-memory breakdown is split into, in the order tables and figures show them.

Torch-free, so that reports and commands can name the categories without importing the probes. The trace
(probes/_memtrack.py) files every tensor under one of them:
  weights      model parameters (and quantization state)
  gradients    parameter gradients
  optimizer    optimizer state (AdamW moments, 8-bit state)
  activations  tensors saved for backward and working tensors of forward and backward
  logits       tensors whose last dimension is the vocabulary: logits, their fp32 copies, log-softmax, gradients
  other        anything else (temporaries of the optimizer step, workspaces)
"""

from __future__ import annotations

CATEGORIES: tuple[str, ...] = ("weights", "gradients", "optimizer", "activations", "logits", "other")
