#!/usr/bin/env bash
# Set everything up (scripts/setup.sh), then run lint, types and the whole test suite.
# Extra arguments go to pytest (e.g. -k vectorize).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV=${FOOTPRINT_VENV:-$(pwd)/.venv}
export QT_QPA_PLATFORM=offscreen FOOTPRINT_PYTHON="$VENV/bin/python"
echo; echo "==> ruff (lint and format check)"
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
echo; echo "==> mypy --strict: engine/, and plugin/ as QGIS imports it (package footprint)"
"$VENV/bin/mypy" engine
TYPES=$(mktemp -d); trap 'rm -rf "$TYPES"' EXIT
ln -s "$(pwd)" "$TYPES/footprint"  # the plugin's relative imports need the package's real name
MYPYPATH="$TYPES" "$VENV/bin/mypy" --config-file pyproject.toml -p footprint.plugin
echo; echo "==> engine tests (engine venv)"
"$VENV/bin/python" -m pytest tests/engine tests/tools -q "$@"
if [ -d tests/plugin ]; then
  echo; echo "==> plugin tests (QGIS's own Python)"
  /usr/bin/python3 -m pytest -p no:cacheprovider tests/plugin -q "$@"
fi
echo; echo "==> all tests passed"
