#!/usr/bin/env bash
# Run the tests that check autofit's trainer files with LLaMA-Factory's and axolotl's own parsers.
# Neither trainer can share autofit's venv (llamafactory 0.9.5 moves torch/transformers/peft; axolotl 0.21.0
# needs Python >= 3.12), so each gets its own venv OUTSIDE the repo, rebuilt unless KEEP_VENVS=1.
# Usage: tools/check_trainer_parsers.sh [lf|axo|all]     (env: VENV_LF, VENV_AXO, PY311, PY312, KEEP_VENVS)
set -uo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
WHICH="${1:-all}"
VENV_LF="${VENV_LF:-/work/venv-lf}"
VENV_AXO="${VENV_AXO:-/work/venv-axo}"
PY311="${PY311:-python3.11}"
PY312="${PY312:-$(pyenv root 2>/dev/null)/versions/3.12.1/bin/python}"
LF_VERSION="${LF_VERSION:-0.9.5}"
AXO_VERSION="${AXO_VERSION:-0.21.0}"
# autofit's needs that the trainers' own dependencies do not already bring; deepspeed because
# TrainingArguments(deepspeed=...) imports it for the ZeRO cases: autofit's pin for LLaMA-Factory,
# < 0.19 for axolotl (its own requirement)
AUTOFIT_EXTRAS=(optuna pandas plotly rich typer pyyaml pytest pytest-timeout bitsandbytes==0.50.2)
LF_EXTRAS=(deepspeed==0.19.8)
AXO_EXTRAS=("deepspeed<0.19")

LF_TESTS=(
  "tests/test_exports.py::test_llamafactory_real_parser_if_installed"
  "tests/test_recommendations.py::test_search_from_writes_the_users_file_back[llamafactory]"
)
AXO_TESTS=(
  "tests/test_exports.py::test_axolotl_real_schema_if_installed"
  "tests/test_recommendations.py::test_search_from_writes_the_users_file_back[axolotl]"
)

build() {  # build VENV PYTHON TRAINER_SPEC [EXTRA...]
  local venv="$1" py="$2" spec="$3"; shift 3
  if [[ "${KEEP_VENVS:-0}" == 1 && -x "$venv/bin/python" ]]; then return 0; fi
  rm -rf "$venv" && "$py" -m venv "$venv" || return 1
  "$venv/bin/pip" install -q "$spec" || return 1
  "$venv/bin/pip" install -q --no-deps -e "$REPO" || return 1
  "$venv/bin/pip" install -q "${AUTOFIT_EXTRAS[@]}" "$@" || return 1
}

run() {  # run VENV TEST...   -rs shows any skip: a skip here means the parser was not exercised
  local venv="$1"; shift
  (cd "$REPO" && DISABLE_VERSION_CHECK=1 PYTHONPATH="$REPO" \
     "$venv/bin/python" -m pytest -q -rs -p no:cacheprovider "$@")
}

status=0
if [[ "$WHICH" == lf || "$WHICH" == all ]]; then
  build "$VENV_LF" "$PY311" "llamafactory==$LF_VERSION" "${LF_EXTRAS[@]}" || { echo "llamafactory venv build failed"; status=1; }
  "$VENV_LF/bin/python" -c "import llamafactory; print('llamafactory', llamafactory.__version__)" || status=1
  run "$VENV_LF" "${LF_TESTS[@]}" || status=1
fi
if [[ "$WHICH" == axo || "$WHICH" == all ]]; then
  build "$VENV_AXO" "$PY312" "axolotl==$AXO_VERSION" "${AXO_EXTRAS[@]}" || { echo "axolotl venv build failed"; status=1; }
  "$VENV_AXO/bin/python" -c "import importlib.metadata as m; print('axolotl', m.version('axolotl'))" || status=1
  run "$VENV_AXO" "${AXO_TESTS[@]}" || status=1
fi
exit $status
