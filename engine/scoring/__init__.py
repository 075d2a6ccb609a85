"""Scores of predicted buildings against reference buildings (pixels and objects)."""
