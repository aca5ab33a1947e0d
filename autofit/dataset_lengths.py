"""--data PATH: the sequence length a training set needs. Reads JSON / JSONL, Parquet, CSV, or a `datasets`
folder saved with save_to_disk; understands LLaMA-Factory's alpaca (instruction/input/output, system, history)
and sharegpt (conversations / messages) layouts, else a `text` column, else every string column. Counts tokens
with the model's tokenizer when it is on this machine (local folder or the Hugging Face cache; never downloaded),
otherwise estimates them from characters at a stated ratio. seq_len is the longest sample, or with
--truncate-share S the length that truncates at most a share S of the samples."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Iterable

import pandas as pd

from .errors import AutofitError
from .models import ModelSpec
from .runtime import runtime_constants

ALPACA_FIELDS = ("system", "instruction", "input", "output")
SHAREGPT_COLUMNS = ("conversations", "messages")
# characters a chat template adds per turn are not counted: a template is the trainer's choice; say so
TEMPLATE_NOTE = "chat-template tokens not counted"


@dataclass
class DataLengths:
    samples: int
    layout: str  # alpaca | sharegpt | text | columns
    counted_by: str  # "the tokenizer of MODEL" | "characters / 3.5 (no tokenizer on this machine)"
    longest: int
    seq_len: int
    truncate_share: float | None

    @property
    def statement(self) -> str:
        how = (f"longest sample, {self.longest} tokens" if not self.truncate_share else
               f"{100 * (1 - self.truncate_share):g}th percentile (--truncate-share {self.truncate_share:g}: at most "
               f"{self.truncate_share:.1%} of samples truncated; longest {self.longest} tokens)")
        return (f"seq_len {self.seq_len} from --data: {self.samples} samples ({self.layout} layout), tokens counted by "
                f"{self.counted_by}, {how}; {TEMPLATE_NOTE}")


def read_table(path_text: str) -> pd.DataFrame:
    path = Path(path_text)
    if not path.exists():
        raise AutofitError(f"--data {path}: not found")
    suffix = path.suffix.lower()
    try:
        if path.is_dir():
            return _read_saved_dataset(path)
        if suffix == ".jsonl":
            return pd.read_json(path, lines=True)
        if suffix == ".json":
            try:
                return pd.read_json(path)
            except ValueError:
                return pd.read_json(path, lines=True)
        if suffix == ".csv":
            return pd.read_csv(path, keep_default_na=False)
        if suffix == ".parquet":
            try:
                return pd.read_parquet(path)
            except ImportError:
                raise AutofitError(f"--data {path}: reading Parquet needs pyarrow, which is not installed "
                                   "(pip install pyarrow)") from None
    except AutofitError:
        raise
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise AutofitError(f"--data {path}: cannot read it: {str(exc).splitlines()[0] if str(exc) else exc}") from None
    raise AutofitError(f"--data {path}: expected .json, .jsonl, .parquet, .csv or a datasets save_to_disk folder")


def _read_saved_dataset(path: Path) -> pd.DataFrame:
    arrows = sorted(path.rglob("*.arrow"))
    if not arrows:
        raise AutofitError(f"--data {path}: a folder must be a datasets save_to_disk folder (no .arrow files)")
    try:
        import pyarrow as pa
    except ImportError:
        raise AutofitError(f"--data {path}: reading a datasets folder needs pyarrow or datasets, neither is "
                           "installed (pip install datasets)") from None
    frames = []
    for arrow in arrows:
        with pa.memory_map(str(arrow)) as source:
            frames.append(pa.ipc.open_stream(source).read_all().to_pandas())
    return pd.concat(frames, ignore_index=True)


def sample_texts(frame: pd.DataFrame) -> tuple[str, list[str]]:
    """(layout, one text per sample)."""
    if frame.empty:
        raise AutofitError("--data: the file holds no samples")
    columns = set(frame.columns)
    if "instruction" in columns and "output" in columns:
        def alpaca(row) -> str:
            parts = [_text(row.get(k)) for k in ALPACA_FIELDS]
            for turn in row.get("history") or []:
                parts += [_text(t) for t in turn]
            return "\n".join(p for p in parts if p)
        return "alpaca", [alpaca(row) for row in frame.to_dict("records")]
    for column in SHAREGPT_COLUMNS:
        if column in columns:
            texts = []
            for turns in frame[column]:
                if not isinstance(turns, (list, tuple)) and not hasattr(turns, "tolist"):
                    raise AutofitError(f"--data: column {column} must hold lists of turns")
                turns = turns.tolist() if hasattr(turns, "tolist") else turns
                texts.append("\n".join(_text(t.get("value", t.get("content"))) for t in turns if isinstance(t, dict)))
            extra = [c for c in ("system", "tools") if c in columns]
            if extra:
                texts = [t + "".join("\n" + _text(v) for v in vals)
                         for t, vals in zip(texts, frame[extra].values, strict=False)]
            return "sharegpt", texts
    if "text" in columns:
        return "text", [_text(v) for v in frame["text"]]
    strings = [c for c in frame.columns if frame[c].map(lambda v: isinstance(v, str)).any()]
    if not strings:
        raise AutofitError("--data: no text found (expected alpaca, sharegpt, a text column or string columns)")
    return "columns", ["\n".join(_text(v) for v in vals) for vals in frame[strings].values]


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return value if isinstance(value, str) else str(value)


def local_tokenizer(model: ModelSpec):
    """The model's tokenizer when it is on this machine (a local folder or the HF cache), else None."""
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(model.hf_ref, local_files_only=True)
    except Exception:  # not cached, no tokenizer files, or no network allowed: estimate from characters
        return None


def count_tokens(texts: Iterable[str], model: ModelSpec) -> tuple[list[int], str]:
    texts = list(texts)
    tokenizer = local_tokenizer(model)
    if tokenizer is not None:
        ids = tokenizer(texts, add_special_tokens=True)["input_ids"]
        return [len(i) for i in ids], f"the tokenizer of {model.hf_ref}"
    ratio = float(runtime_constants()["chars_per_token"])
    return ([max(1, math.ceil(len(t) / ratio)) for t in texts],
            f"characters / {ratio:g} (no tokenizer for {model.hf_ref} on this machine; an estimate)")


def seq_len_from_data(path: str, model: ModelSpec, truncate_share: float | None = None) -> DataLengths:
    if truncate_share is not None and not 0 <= truncate_share < 1:
        raise AutofitError("--truncate-share must be at least 0 and below 1 (e.g. 0.01 truncates at most 1%)")
    layout, texts = sample_texts(read_table(path))
    lengths, counted_by = count_tokens(texts, model)
    longest = max(lengths)
    if truncate_share:
        ordered = sorted(lengths)
        keep = math.ceil(len(ordered) * (1 - truncate_share))  # samples that must fit whole
        target = ordered[max(0, keep - 1)]
    else:
        target = longest
    seq_len = max(8, target)
    if seq_len > model.max_positions:
        raise AutofitError(f"--data {path}: samples need {seq_len} tokens, beyond {model.name}'s "
                           f"{model.max_positions} positions; use --truncate-share or --seq-len")
    return DataLengths(samples=len(lengths), layout=layout, counted_by=counted_by, longest=longest, seq_len=seq_len,
                       truncate_share=truncate_share)
