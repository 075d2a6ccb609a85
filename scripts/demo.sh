#!/usr/bin/env bash
# The main job, end to end: set up, train a small model on the example's training chips,
# detect buildings on its test chips, evaluate against the reference footprints, and print
# the scores and where the results are.
#   bash scripts/demo.sh [DATA_FOLDER] [OUT_FOLDER]
# DATA_FOLDER holds train/oam/*.tif, test/oam/*.tif and labels/*.geojson (default:
# ../shared/data/banepa, or $FOOTPRINT_DATA/banepa).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
DATA=${1:-${FOOTPRINT_DATA:-../shared/data}/banepa}
OUT=${2:-out/demo}
EPOCHS=${FOOTPRINT_DEMO_EPOCHS:-15}
PY=.venv/bin/python
[ -d "$DATA/train" ] || { echo "Example data not found at $DATA: give its folder as first argument." >&2; exit 1; }
mkdir -p "$OUT"
LABELS=$(ls "$DATA"/labels/*.geojson | head -n1)

echo; echo "==> Training a compact U-Net on $DATA/train ($EPOCHS epochs, CPU is fine)"
$PY -m engine train --raster "$DATA/train/oam" --labels "$LABELS" --output "$OUT/model.pt" \
    --architecture compact --tile-size 256 --epochs "$EPOCHS" --batch-size 8 --lr 0.01 \
    --overwrite
echo; echo "==> Detecting buildings on $DATA/test"
$PY -m engine detect --raster "$DATA/test/oam" --model "$OUT/model.pt" \
    --output "$OUT/buildings.gpkg" --keep-probability "$OUT/probability.tif" --overwrite
echo; echo "==> Evaluating against $LABELS on the test chips' extent"
$PY -m engine evaluate --predicted "$OUT/buildings.gpkg" --reference "$LABELS" \
    --area "$OUT/probability.tif" --output "$OUT/evaluation.gpkg" --report "$OUT/scores.json" --overwrite
echo; echo "==> Results"
echo "  buildings:  $OUT/buildings.gpkg"
echo "  evaluation: $OUT/evaluation.gpkg (TP/FP/FN per building)"
echo "  scores:     $OUT/scores.json"
