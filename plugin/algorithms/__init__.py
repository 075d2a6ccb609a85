"""The Processing algorithms of the Footprint provider, one module per algorithm."""

from __future__ import annotations

from importlib import import_module

from qgis.core import QgsProcessingAlgorithm

#: Module (in this package) and class name of every algorithm, in toolbox order.
ALGORITHM_MODULES = (
    ("rasterizelabels", "RasterizeLabels"),
    ("train", "Train"),
    ("improve", "Improve"),
    ("predict", "Predict"),
    ("vectorize", "Vectorize"),
    ("detect", "Detect"),
    ("evaluate", "Evaluate"),
    ("export", "Export"),
)


def algorithm_classes() -> list[type[QgsProcessingAlgorithm]]:
    """The algorithm classes, imported on demand (a missing module is an error)."""
    return [
        getattr(import_module(f"{__name__}.{module_name}"), class_name)
        for module_name, class_name in ALGORITHM_MODULES
    ]
