#!/usr/bin/env bash
# The GPU checks of issue 3 in one call on a lent GPU machine, everything it writes under $OUT:
#   1. bench/validate_gpu.py: the trace probe's predictions against real CUDA probes (llama3.2-1b and glm4-9b,
#      21 rows; the glm4-9b QLoRA row's "probe s" is the probe time, process start included)
#   2. a short real search, `autofit search --probe cuda`, on llama3.2-1b with a 24GB budget
# Prepare here with `bash bench/gpu/fetch_wheels.sh`, then call the device tool once:
#     run(command="bash bench/gpu/run_on_device.sh", carry=[".whl"], timeout_s=590)
# and copy $OUT/validation.md to docs/validation/<gpu>.md. AUTOFIT_KIT_CPU=1 rehearses the same steps on the CPU
# with a 20M model (wheels fetched for the local Python: PYVER=3.11 bash bench/gpu/fetch_wheels.sh).
set -uo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${OUT:-$(mktemp -d /tmp/autofit-out.XXXXXX)}
BUDGET_S=${BUDGET_S:-560}         # the whole script; later steps are skipped rather than cut off
DEADLINE_MIN=${DEADLINE_MIN:-5.5}   # validate_gpu.py starts no row after this
SEARCH_S=${SEARCH_S:-60}          # wall budget of the search
cpu=${AUTOFIT_KIT_CPU:-0}
mkdir -p "$OUT"
started=$SECONDS

site=$(mktemp -d /tmp/autofit-site.XXXXXX)
built=$(mktemp -d /tmp/autofit-wheel.XXXXXX)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
  "$repo"/.whl/*.whl || { echo "run_on_device.sh: installing the carried wheels failed" >&2; exit 1; }
export PYTHONPATH=$site PATH=$site/bin:$PATH PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
# autofit from the source that travelled (installed, so that its packaged search spaces resolve as for a user),
# built with the carried setuptools
python3 -m pip wheel -q --no-deps --no-index --no-build-isolation -w "$built" "$repo" \
  && python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$site" "$built"/*.whl \
  || { echo "run_on_device.sh: building autofit failed" >&2; exit 1; }
# run outside the source tree, so that every process (probe children too) imports the installed autofit
work=$(mktemp -d /tmp/autofit-work.XXXXXX)
cd "$work" || exit 1

{
  echo "# environment"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || echo "no nvidia-smi"
  python3 - <<'PYEOF'
import platform, torch
import accelerate, bitsandbytes, deepspeed, optuna, peft, transformers
print("python", platform.python_version(), "| torch", torch.__version__, "cuda", torch.version.cuda,
      "| transformers", transformers.__version__, "| peft", peft.__version__, "| accelerate", accelerate.__version__,
      "| bitsandbytes", bitsandbytes.__version__, "| deepspeed", deepspeed.__version__, "| optuna", optuna.__version__)
if torch.cuda.is_available():
    free, total = torch.cuda.mem_get_info()
    print(torch.cuda.get_device_name(), f"{total / 2**30:.2f} GiB, {free / 2**30:.2f} GiB free")
PYEOF
  echo "setup took $((SECONDS - started)) s"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

if [ "$cpu" = 1 ]; then
  validate=(--probe cpu --model "$repo/tests/data/glm-20m" --limit 2)
  search=(--probe cpu --model "$repo/tests/data/glm-20m" --gpu-mem 1GB --space "$repo/tests/data/cpu-space.yaml")
else
  validate=()
  search=(--probe cuda --model llama3.2-1b --gpu-mem 24GB --set zero_stage=0 --set offload=none --set seq_len=2048)
fi

left() { echo $((BUDGET_S - (SECONDS - started))); }
# DeepSpeed JIT-builds its CPU Adam on first use (the ZeRO-offload rows, last): build it now, beside the first rows,
# so no probe spends its timeout compiling (a probe killed mid-build would leave a lock the next one waits on)
if [ "$cpu" != 1 ]; then  # (no ZeRO rows on the CPU, and its two cores are the probes')
  python3 -c "from deepspeed.ops.op_builder import CPUAdamBuilder; CPUAdamBuilder().load()" > "$work/cpu_adam.log" 2>&1 &
fi

# each probe at most PROBE_TIMEOUT_S; the whole validation stopped (Ctrl-C: the table so far stays) before the budget
timeout -s INT -k 20 $(($(left) - 40)) python3 "$repo/bench/validate_gpu.py" "${validate[@]}" \
  --deadline-min "$DEADLINE_MIN" --timeout "${PROBE_TIMEOUT_S:-150}" --out "$OUT/validation.md" 2>&1 | tee "$OUT/validate.log"
echo "validation done at $((SECONDS - started)) s"
if [ "$cpu" != 1 ] && [ "$(left)" -gt 150 ]; then  # the tests that skip without a GPU
  timeout -k 10 $(($(left) - 30)) python3 -m pytest -q -p no:cacheprovider --rootdir "$repo" "$repo/tests/test_real_probes.py" \
    -k cuda > "$OUT/tests.log" 2>&1
  echo "cuda tests exit status $? at $((SECONDS - started)) s" | tee -a "$OUT/tests.log"
fi

if [ "$(left)" -gt $((SEARCH_S + 60)) ]; then
  timeout -s INT -k 10 $(($(left) - 10)) autofit search "${search[@]}" --trials 12 --timeout "$SEARCH_S" \
    --out "$work/search" > "$OUT/search.log" 2>&1
  echo "search exit status $? at $((SECONDS - started)) s" | tee -a "$OUT/search.log"
  tail -n 30 "$OUT/search.log"
  # at most 8 files come back: the search's outputs travel as one archive
  tar -czf "$OUT/search.tar.gz" -C "$work" search 2>/dev/null
else
  echo "search skipped: $(left) s left of BUDGET_S=$BUDGET_S" | tee "$OUT/search.log"
fi
ls -l "$OUT"
