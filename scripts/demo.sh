#!/usr/bin/env bash
# The main job, end to end through QGIS Processing (qgis_process): set up, train the default model
# on the example's training chips, detect buildings on its test chips, evaluate against the
# reference footprints, draw a PNG preview, and print the scores and where everything is.
#   bash scripts/demo.sh [DATA_FOLDER] [OUT_FOLDER]
# DATA_FOLDER holds train/oam/*.tif, test/oam/*.tif and labels/*.geojson (default:
# ../shared/data/banepa, or $FOOTPRINT_DATA/banepa; where that is absent, a small synthetic
# example scene is generated into OUT_FOLDER/example). FOOTPRINT_DEMO_EPOCHS sets the epochs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# the engine setup.sh made (FOOTPRINT_VENV: elsewhere, as setup.sh allows)
export FOOTPRINT_PYTHON=${FOOTPRINT_PYTHON:-${FOOTPRINT_VENV:-$(pwd)/.venv}/bin/python}
DATA=${1:-}
OUT=${2:-out/demo}
EPOCHS=${FOOTPRINT_DEMO_EPOCHS:-8}
mkdir -p "$OUT"
if [ -z "$DATA" ]; then
  DATA=${FOOTPRINT_DATA:-../shared/data}/banepa
  if [ ! -d "$DATA/train" ]; then
    echo; echo "==> $DATA not found: generating a small synthetic example scene in $OUT/example"
    "$FOOTPRINT_PYTHON" -m tools.example "$OUT/example" > /dev/null
    DATA=$OUT/example
  fi
fi
[ -d "$DATA/train" ] || { echo "Example data not found at $DATA: give its folder as first argument." >&2; exit 1; }
OUT=$(cd "$OUT" && pwd)
LABELS=$(ls "$DATA"/labels/*.geojson | head -n1)
# qgis_process in text mode, unbuffered, shows each step's messages and progress as they come
# (--json would print nothing until the end); scripts/qgis_progress.py echoes them and keeps the
# step's results in OUT/<step>.json.
step() {
  local name=$1; shift
  stdbuf -o0 bash scripts/qgis_process.sh run "$@" | /usr/bin/python3 scripts/qgis_progress.py "$OUT/$name.json"
}

echo; echo "==> Mosaicking the chips into virtual rasters (gdalbuildvrt)"
gdalbuildvrt -q -overwrite "$OUT/train.vrt" "$DATA"/train/oam/*.tif
gdalbuildvrt -q -overwrite "$OUT/test.vrt" "$DATA"/test/oam/*.tif

echo; echo "==> footprint:train: train's default model (U-Net, EfficientNet-Lite0 from its packaged"
echo "    ImageNet weights, separation class), $EPOCHS epochs on $DATA/train (CPU is fine)"
step train footprint:train -- RASTERS="$OUT/train.vrt" LABELS="$LABELS" \
    TILE_SIZE=256 EPOCHS="$EPOCHS" BATCH_SIZE=8 OUTPUT="$OUT/model.pt"

echo; echo "==> footprint:detect on $DATA/test"
step detect footprint:detect -- INPUT="$OUT/test.vrt" MODEL="$OUT/model.pt" \
    OUTPUT="$OUT/buildings.gpkg" PROBABILITY="$OUT/probability.tif"

echo; echo "==> footprint:evaluate against $LABELS on the test chips' extent"
step evaluate footprint:evaluate -- PREDICTED="$OUT/buildings.gpkg" REFERENCE="$LABELS" \
    AREA="$OUT/test.vrt" OUTPUT="$OUT/evaluation.gpkg" REPORT="$OUT/scores.json"

"$FOOTPRINT_PYTHON" -m tools.preview --raster "$OUT/test.vrt" --predicted "$OUT/buildings.gpkg" \
    --reference "$LABELS" --output "$OUT/preview.png" --max-side 1600 --overwrite > /dev/null

echo; echo "==> Scores on the test area"
/usr/bin/python3 - "$OUT/evaluate.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"  pixels:    precision {r['PIXEL_PRECISION']:.3f}  recall {r['PIXEL_RECALL']:.3f}"
      f"  F1 {r['PIXEL_F1']:.3f}  IoU {r['PIXEL_IOU']:.3f}  accuracy {r['PIXEL_ACCURACY']:.3f}")
print(f"  buildings: precision {r['OBJECT_PRECISION']:.3f}  recall {r['OBJECT_RECALL']:.3f}"
      f"  F1 {r['OBJECT_F1']:.3f}  (one-to-one at IoU >= 0.5)")
print(f"  left:      {r['MERGES']:.0f} detections run two or more buildings together,"
      f" {r['SPLITS']:.0f} buildings are cut in pieces")
PY
echo
echo "  buildings:  $OUT/buildings.gpkg"
echo "  evaluation: $OUT/evaluation.gpkg (TP/FP/FN per building, with the cause of each error)"
echo "  scores:     $OUT/scores.json"
echo "  preview:    $OUT/preview.png (orange: detected, cyan: reference)"
echo "  model:      $OUT/model.pt (report: $OUT/model_report/)"
