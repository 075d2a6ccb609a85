#!/usr/bin/env bash
# Set up everything Footprint needs on Debian 12 (idempotent: a second run only checks).
#   1. QGIS from Debian's packages (qgis, python3-qgis, qgis-providers) + python3-pytest
#   2. the engine's own virtual environment in .venv (system Python 3.11, no system packages)
#   3. pinned Python dependencies from requirements.txt (+ requirements-dev.txt)
# The engine venv is never put on QGIS's Python path (its numpy 2 breaks Debian's GDAL bindings):
# the plugin starts the engine as a separate process with .venv/bin/python.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=${FOOTPRINT_VENV:-$ROOT/.venv}

say() { printf '\n==> %s\n' "$*"; }
die() { printf '\nSET-UP FAILED: %s\n' "$*" >&2; exit 1; }

SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || die "not root and no sudo: install qgis python3-qgis qgis-providers python3-venv python3-pytest yourself"
  SUDO=sudo
fi

APT_PACKAGES="qgis python3-qgis qgis-providers python3-venv python3-pytest"
missing=""
for pkg in $APT_PACKAGES; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
  say "Installing Debian packages:$missing (about 2 minutes)"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q || die "apt-get update failed (network? sources?)"
  $SUDO apt-get install -y -q --no-install-recommends $missing \
    || $SUDO apt-get install -y -q $missing || die "apt-get install$missing failed"
else
  say "Debian packages present: $APT_PACKAGES"
fi
/usr/bin/python3 -c "import qgis.core" 2>/dev/null || die "PyQGIS does not import in /usr/bin/python3"

if [ ! -x "$VENV/bin/python" ]; then
  say "Creating the engine's virtual environment in $VENV"
  /usr/bin/python3 -m venv "$VENV" || die "could not create $VENV (is python3-venv installed?)"
fi

STAMP="$VENV/.footprint-requirements"
WANT=$(cat requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  # The packages take ~6.6 GB installed (6.7 GB at the peak of a fresh install, measured with
  # pip's cache off: otherwise the cache keeps another ~3 GB of wheels). Check the disk first:
  # a full disk part-way leaves a half-made environment and an error that says nothing useful.
  NEED_MB=${FOOTPRINT_SETUP_NEED_MB:-8000}
  free_mb() { df -Pm "$1" | awk 'NR == 2 {print $4}'; }
  TMP_DIR=${TMPDIR:-/tmp}
  for where in "$VENV" "$TMP_DIR"; do
    have=$(free_mb "$where")
    if [ "$have" -lt "$NEED_MB" ]; then
      die "only $((have / 1024)) GB free on the disk of $where; installing the Python packages needs about $((NEED_MB / 1024)) GB there (torch with CUDA support). Free some space, or put the environment on a larger disk (FOOTPRINT_VENV=/path/to/venv) and pip's temporary files there too (TMPDIR=/path/to/tmp), then run this again"
    fi
  done
  say "Installing pinned Python packages into $VENV (torch with CUDA support, ~6.5 GB, a few minutes)"
  LOG=$(mktemp)
  "$VENV/bin/python" -m pip install -q --upgrade pip >"$LOG" 2>&1 || { cat "$LOG"; die "pip upgrade failed"; }
  # requirements.txt pins torch==2.14.1: the registry's build, not the local CPU-only 2.13 wheel
  # that has no matching torchvision.
  "$VENV/bin/python" -m pip install -q --no-cache-dir -r requirements.txt -r requirements-dev.txt >"$LOG" 2>&1 \
    || { grep -v "is ignored: it is neither" "$LOG"; die "pip install -r requirements.txt failed"; }
  rm -f "$LOG"
  echo "$WANT" > "$STAMP.tmp"
else
  say "Python packages already installed in $VENV (requirements unchanged)"
fi

say "Checking the engine's environment"
"$VENV/bin/python" - <<'PY' || die "the engine's packages do not import; delete .venv and run again"
import affine, geopandas, rasterio, segmentation_models_pytorch as smp, shapely, torch
assert affine.__version__.split(".")[0] != "3", "affine 3 is broken on Python 3.11.2; pin affine<3"
print(f"torch {torch.__version__} (CUDA available: {torch.cuda.is_available()}), smp {smp.__version__},"
      f" rasterio {rasterio.__version__} (GDAL {rasterio.__gdal_version__}), geopandas {geopandas.__version__}")
PY
[ -f "$STAMP.tmp" ] && mv "$STAMP.tmp" "$STAMP"

QGIS_PROCESS=$(bash scripts/qgis_process_path.sh) || die "qgis_process not found"
say "QGIS: $(QT_QPA_PLATFORM=offscreen "$QGIS_PROCESS" --version 2>/dev/null | grep -m1 QGIS || echo "$QGIS_PROCESS")"
say "Set-up complete"
