"""Tools around the engine that are not the pipeline (not shipped in the plugin zip): a synthetic
example scene and a PNG preview. Run from the repository root: ``python -m tools.example``."""
