"""Geo I/O: rasters read window by window, the pixel grid and its windows, building labels,
vector layers, atomic outputs, the work area and per-band normalisation."""
