#!/usr/bin/env bash
# Build the installable plugin zip: dist/footprint-<version>.zip holding one folder footprint/
# with the plugin, the engine and what scripts/setup.sh needs to make the engine environment
# (no tests, caches or virtual environments). Prints the zip's path.
#   bash scripts/build_zip.sh [OUT_FOLDER]      (default: dist)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$ROOT/dist}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
VERSION=$(sed -n 's/^version=//p' "$ROOT/metadata.txt" | tr -d '[:space:]')
[ -n "$VERSION" ] || { echo "no version= in metadata.txt" >&2; exit 1; }
ZIP="$OUT/footprint-$VERSION.zip"
python3 - "$ROOT" "$ZIP" <<'PY'
"""Write the zip with sorted entries, skipping caches and compiled files."""
import sys
import zipfile
from pathlib import Path

root, target = Path(sys.argv[1]), Path(sys.argv[2])
TOP = "footprint"
ITEMS = ["metadata.txt", "__init__.py", "plugin", "engine", "resources", "README.md",
         "LICENSE", "requirements.txt", "requirements-detect.txt", "requirements-lock",
         "requirements-dev.txt",
         "pyproject.toml", "scripts/setup.sh", "scripts/qgis_process_path.sh"]
REQUIRED = {"metadata.txt", "__init__.py", "plugin", "engine", "resources", "requirements.txt",
            "requirements-detect.txt",
            "requirements-lock", "LICENSE", "scripts/setup.sh"}
SKIP_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".venv", "tests"}
SKIP_SUFFIXES = {".pyc", ".pyo", ".orig", ".rej", ".swp"}


def files(item: Path):
    if item.is_file():
        yield item
        return
    for path in sorted(item.rglob("*")):
        parts = set(path.relative_to(root).parts)
        if path.is_file() and not parts & SKIP_DIRS and path.suffix not in SKIP_SUFFIXES:
            yield path


tmp = target.with_suffix(".zip.tmp")
with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
    for name in ITEMS:
        item = root / name
        if not item.exists():
            if name in REQUIRED:
                sys.exit(f"missing {item}")
            continue
        for path in files(item):
            rel = path.relative_to(root).as_posix()
            info = zipfile.ZipInfo.from_file(path, f"{TOP}/{rel}")
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())
tmp.replace(target)
PY
echo "$ZIP"
