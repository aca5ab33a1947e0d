"""Check that a refactoring changed no behaviour: run one seeded trace-probe search and compare its outputs with
those of a reference tree.

    python tools/compare_search_outputs.py run OUT_DIR [STUDY_DB]  # seeded search into OUT_DIR (this tree)
    python tools/compare_search_outputs.py diff REF_DIR NEW_DIR    # exit 0 if identical, 1 with the differences

`run` also rebuilds the report from STUDY_DB (a frozen study, e.g. REF_DIR/study.db of the reference tree) into
OUT_DIR/frozen/report.html, so the two trees' reports are compared on the very same trials (probe durations and
timestamps included) and must be identical but for the build's own path.

What is compared: every file a search writes (trials.csv, pareto.csv, seq-len.csv, best-config.yaml, the trainer
file) after removing what differs between two runs of the *same* tree: wall-clock durations, timestamps, the
output directory's path, and floating-point noise below 1e-9 relative (summation order in the performance model).
The search's own report.html holds durations and timestamps everywhere, so it is compared through frozen/.
"""

from __future__ import annotations

import csv
import difflib
import io
import re
import shutil
import subprocess
import sys
from pathlib import Path

SEARCH = ["search", "--model", "glm4-9b", "--gpu-mem", "24GB", "--trials", "12", "--seed", "7"]
# Columns and keys that hold wall-clock time, which no two runs share.
VOLATILE_COLUMNS = {"duration_s"}
VOLATILE_PATTERNS = [
    (re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d+)?([+-]\d{2}:?\d{2}|Z)?"), "<time>"),
    (re.compile(r"(duration[_a-z]*\"?:?\s*)[0-9.]+(\s*s)?"), r"\1<s>"),
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "<uuid>"),
    (re.compile(r"(took|in) [0-9.]+ ?(s|min)\b"), r"\1 <s>"),
]


def _normalise_csv(text: str) -> str:
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return text
    keep = [i for i, name in enumerate(rows[0]) if name not in VOLATILE_COLUMNS]
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([[row[i] for i in keep if i < len(row)] for row in rows])
    return out.getvalue()


_FLOAT = re.compile(r"-?\d+\.\d{6,}(e-?\d+)?")


def _normalise(path: Path, out_dir: Path) -> str:
    text = path.read_text(encoding="utf-8", errors="replace")
    text = text.replace(str(out_dir.resolve()), "<out>").replace(str(out_dir), "<out>")
    if path.suffix == ".csv":
        text = _normalise_csv(text)
    if path.suffix != ".html":
        text = _FLOAT.sub(lambda m: f"{float(m.group(0)):.9g}", text)
        for pattern, replacement in VOLATILE_PATTERNS:
            text = pattern.sub(replacement, text)
    return text


def run(out_dir: Path, frozen_study: Path | None) -> int:
    command = [sys.executable, "-m", "autofit", *SEARCH, "--out", str(out_dir)]
    code = subprocess.run(command, check=False).returncode
    if code == 0 and frozen_study is not None:
        frozen = out_dir / "frozen"
        frozen.mkdir(parents=True)
        shutil.copy(frozen_study, frozen / "study.db")
        code = subprocess.run([sys.executable, "-m", "autofit", "report", str(frozen)], check=False).returncode
        (frozen / "study.db").unlink()
    return code


def diff(ref_dir: Path, new_dir: Path) -> int:
    def files(root: Path) -> set[str]:
        return {str(p.relative_to(root)) for p in root.rglob("*")
                if p.is_file() and p.suffix != ".db" and p.relative_to(root) != Path("report.html")}

    names = sorted(files(ref_dir) | files(new_dir))
    differing = 0
    for name in names:
        ref, new = ref_dir / name, new_dir / name
        if not ref.exists() or not new.exists():
            print(f"{name}: only in {'new' if new.exists() else 'reference'}")
            differing += 1
            continue
        a, b = _normalise(ref, ref_dir), _normalise(new, new_dir)
        if a != b:
            differing += 1
            lines = list(difflib.unified_diff(a.splitlines(), b.splitlines(), f"ref/{name}", f"new/{name}",
                                              lineterm="", n=1))
            print("\n".join(lines[:40]))
    print(f"{len(names) - differing} of {len(names)} files identical")
    return 1 if differing else 0


def main(argv: list[str]) -> int:
    if len(argv) in (2, 3) and argv[0] == "run":
        return run(Path(argv[1]), Path(argv[2]) if len(argv) == 3 else None)
    if len(argv) == 3 and argv[0] == "diff":
        return diff(Path(argv[1]), Path(argv[2]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
