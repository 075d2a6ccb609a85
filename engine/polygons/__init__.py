"""Polygons: from probability blocks to clean building polygons."""
