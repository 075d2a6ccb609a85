#!/usr/bin/env bash
# qgis_process with the Footprint plugin of this folder installed and enabled:
#   bash scripts/qgis_process.sh list | grep footprint
#   bash scripts/qgis_process.sh help footprint:detect
#   bash scripts/qgis_process.sh --json run footprint:detect -- INPUT=... MODEL=... OUTPUT=...
# The plugin is linked into $FOOTPRINT_PLUGINPATH (default ~/.local/share/footprint/plugins); the
# engine runs with $FOOTPRINT_PYTHON (default: $FOOTPRINT_VENV/bin/python, else this folder's
# .venv/bin/python, as scripts/setup.sh makes it).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$(bash "$ROOT/scripts/qgis_process_path.sh")
PLUGINS=${FOOTPRINT_PLUGINPATH:-$HOME/.local/share/footprint/plugins}
mkdir -p "$PLUGINS"
ln -sfn "$ROOT" "$PLUGINS/footprint"
export QGIS_PLUGINPATH="$PLUGINS${QGIS_PLUGINPATH:+:$QGIS_PLUGINPATH}"
export QT_QPA_PLATFORM=${QT_QPA_PLATFORM:-offscreen}
export FOOTPRINT_PYTHON=${FOOTPRINT_PYTHON:-${FOOTPRINT_VENV:-$ROOT/.venv}/bin/python}
if ! enabled=$("$BIN" plugins enable footprint 2>&1) && ! grep -q "already enabled" <<<"$enabled"; then
  echo "$enabled" >&2
  echo "qgis_process could not enable the Footprint plugin from $PLUGINS/footprint" >&2
  exit 1
fi
exec "$BIN" "$@" 2> >(grep -v "XDG_RUNTIME_DIR\|setapi() is deprecated" >&2)
