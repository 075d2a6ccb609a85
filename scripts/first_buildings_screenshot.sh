#!/usr/bin/env bash
# A new user's first buildings, in the real QGIS desktop under Xvfb, for the README:
#   bash scripts/first_buildings_screenshot.sh [DATA_FOLDER] [WORK_FOLDER]
# Makes a local XYZ layer of the example's test imagery (gdal2tiles.py, zooms 16-20: the map asks
# for the zoom of its scale, z18 for a neighbourhood, and draws nothing where it is missing), a fresh
# QGIS profile with the plugin of this folder enabled, and runs scripts/first_buildings_screenshot.py
# in QGIS: the XYZ layer added, the map zoomed to the northern half of the test area, Plugins >
# Footprint > Detect buildings... with only the extent set (the canvas's: the starter model), Run.
# Writes docs/images/first_buildings.png (256 colours) and WORK_FOLDER/timing.json (detect's
# seconds). The engine is $FOOTPRINT_PYTHON (default this folder's .venv, as Install engine
# makes one); FOOTPRINT_STARTER_MODEL names another starter model file;
# FOOTPRINT_SCREENSHOT_EXTENT another neighbourhood (xmin,xmax,ymin,ymax [EPSG:n]).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DATA=$(realpath "${1:-$ROOT/../shared/data/banepa}")
WORK=$(realpath -m "${2:-$ROOT/out/first_buildings}")
rm -rf "$WORK/profiles"
mkdir -p "$WORK/plugins" "$WORK/profiles/profiles/default/QGIS"
gdalbuildvrt -q -overwrite "$WORK/test.vrt" "$DATA"/test/oam/*.tif
if [ ! -d "$WORK/tiles/16" ]; then
  gdal2tiles.py --xyz -z 16-20 -w none --processes=1 "$WORK/test.vrt" "$WORK/tiles" >/dev/null
fi
# the northern half of the test area, in the VRT's CRS (EPSG:4326)
EXTENT=${FOOTPRINT_SCREENSHOT_EXTENT:-$(/usr/bin/python3 - "$WORK/test.vrt" <<'EOF'
import sys
from osgeo import gdal
ds = gdal.Open(sys.argv[1])
x0, dx, _, y1, _, dy = ds.GetGeoTransform()
x1, y0 = x0 + dx * ds.RasterXSize, y1 + dy * ds.RasterYSize
print(f"{x0!r},{x1!r},{(y0 + y1) / 2!r},{y1!r} [EPSG:4326]")
EOF
)}
ln -sfn "$ROOT" "$WORK/plugins/footprint"
printf '[PythonPlugins]\nfootprint=true\n' >"$WORK/profiles/profiles/default/QGIS/QGIS3.ini"
export QGIS_PLUGINPATH="$WORK/plugins"
export FOOTPRINT_PYTHON=${FOOTPRINT_PYTHON:-${FOOTPRINT_VENV:-$ROOT/.venv}/bin/python}
export FOOTPRINT_REPO=$ROOT
export FOOTPRINT_SCREENSHOT=${FOOTPRINT_SCREENSHOT:-$ROOT/docs/images/first_buildings.png}
export FOOTPRINT_SCREENSHOT_XYZ="type=xyz&url=file://$WORK/tiles/{z}/{x}/{y}.png&zmax=20&zmin=0"
export FOOTPRINT_SCREENSHOT_EXTENT=$EXTENT
export FOOTPRINT_SCREENSHOT_TIMING=$WORK/timing.json
rm -f "$FOOTPRINT_SCREENSHOT_TIMING"
cd "$ROOT"
xvfb-run -a -s "-screen 0 1280x800x24" qgis --nologo --noversioncheck \
  --profiles-path "$WORK/profiles" --code "$ROOT/scripts/first_buildings_screenshot.py"
test -s "$FOOTPRINT_SCREENSHOT_TIMING" || { echo "the screenshot run did not finish" >&2; exit 1; }
/usr/bin/python3 - "$FOOTPRINT_SCREENSHOT" <<'EOF'
import sys
from PIL import Image
Image.open(sys.argv[1]).convert("RGB").quantize(256, dither=Image.Dither.NONE).save(sys.argv[1], optimize=True)
EOF
cat "$FOOTPRINT_SCREENSHOT_TIMING"; echo
ls -l "$FOOTPRINT_SCREENSHOT"
