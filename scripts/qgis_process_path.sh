#!/usr/bin/env bash
# Print the qgis_process executable to use. Debian's /usr/bin/qgis_process wrapper appends
# --noversioncheck, which QGIS 3.22 rejects; call the real binary where the wrapper is broken.
set -u
for candidate in "${QGIS_PROCESS:-}" /usr/bin/qgis_process.bin "$(command -v qgis_process.bin 2>/dev/null)" \
                 "$(command -v qgis_process 2>/dev/null)"; do
  [ -n "$candidate" ] && [ -x "$candidate" ] || continue
  if QT_QPA_PLATFORM=offscreen "$candidate" --version >/dev/null 2>&1; then
    echo "$candidate"; exit 0
  fi
done
echo "qgis_process not found or not working; install QGIS (bash scripts/setup.sh)" >&2
exit 1
