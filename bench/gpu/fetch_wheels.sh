#!/usr/bin/env bash
# Fill .whl/ with the Python packages the lent GPU machine lacks, so that bench/gpu/run_on_device.sh runs there in
# one call (no package registry can be reached from it). Run here, from anywhere in the repo:
#
#     bash bench/gpu/fetch_wheels.sh            # wheels for the device's Python 3.12
#
# autofit itself is built from the travelled source on the device (run_on_device.sh), so the wheels need no
# refresh after a change to autofit; setuptools travels for that build (pyproject's license string needs >= 77). The versions are the ones the CPU test suite runs with, so the GPU run measures the same stack. The device image
# already holds torch (a CUDA build), accelerate, numpy, pandas, rich, typer, pyyaml, tokenizers, safetensors,
# huggingface-hub, narwhals, psutil, ninja, einops, msgpack, py-cpuinfo and markupsafe (see KINDS.md of the
# device tool). .whl/ is ignored through .git/info/exclude and travels with `carry: [".whl"]` (64 MiB limit).
set -euo pipefail
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
PY=${PYTHON:-python3}
PYVER=${PYVER:-3.12}
DEST=${DEST:-.whl}

exclude=$(git rev-parse --git-path info/exclude)  # also right in a worktree, where .git is a file
mkdir -p "$(dirname "$exclude")"
grep -qx "/$DEST/" "$exclude" 2>/dev/null || echo "/$DEST/" >> "$exclude"
rm -rf "$DEST"
mkdir -p "$DEST"

platforms=()
for tag in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
           manylinux2014_x86_64 manylinux1_x86_64 any; do
  platforms+=(--platform "$tag")
done
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
  "${platforms[@]}" -d "$DEST" \
  transformers==5.24.0 peft==0.21.2 bitsandbytes==0.50.2 \
  optuna==5.0.0 alembic==1.20.1 sqlalchemy==2.1.9 mako==1.4.3 colorlog==6.12.0 \
  pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 hjson==3.1.0 \
  plotly==7.1.0 setuptools==84.2.1

# DeepSpeed is published as an sdist only: build its pure-Python wheel (its ops are JIT-built on first use).
# Its setup.py imports torch, hence no build isolation (the interpreter here must have torch).
DS_BUILD_OPS=0 "$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$DEST" deepspeed==0.19.8

# bitsandbytes ships one library per CUDA/ROCm/XPU release (129 MB unpacked); the device's torch is a CUDA 13
# build, so keep the CPU and CUDA 13.x libraries only (bitsandbytes loads the one matching torch.version.cuda).
"$PY" - "$DEST" <<'PYEOF'
import sys, zipfile
from pathlib import Path

dest = Path(sys.argv[1])
(wheel,) = dest.glob("bitsandbytes-*.whl")
slim = wheel.with_suffix(".slim")
def keep(name: str) -> bool:
    lib = name.rsplit("/", 1)[-1]
    return not lib.startswith("libbitsandbytes_") or lib.startswith(("libbitsandbytes_cpu", "libbitsandbytes_cuda13"))
with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(slim, "w", zipfile.ZIP_DEFLATED) as out:
    for item in src.infolist():
        if not keep(item.filename):
            continue
        data = src.read(item)
        if item.filename.endswith(".dist-info/RECORD"):  # drop the removed files' lines
            data = "".join(l for l in data.decode().splitlines(True) if keep(l.split(",", 1)[0])).encode()
        out.writestr(item, data)
slim.replace(wheel)
PYEOF

ls -l "$DEST"
total=$(du -cb "$DEST"/*.whl | tail -1 | cut -f1)
echo "$(ls "$DEST"/*.whl | wc -l) wheels, $((total / 1048576)) MiB (the working tree and carried paths travel together, 64 MiB at most)"
