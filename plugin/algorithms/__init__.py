"""The Processing algorithms of the Footprint provider, one module per algorithm."""

from __future__ import annotations

from importlib import import_module

from qgis.core import QgsProcessingAlgorithm

#: Module (in this package) and class name of every algorithm, in toolbox order.
ALGORITHM_MODULES = (
    ("rasterizelabels", "RasterizeLabels"),
    ("train", "Train"),
    ("predict", "Predict"),
    ("vectorize", "Vectorize"),
    ("detect", "Detect"),
    ("evaluate", "Evaluate"),
)


def algorithm_classes() -> list[type[QgsProcessingAlgorithm]]:
    """The algorithm classes (imported on demand; a module not written yet is skipped)."""
    classes = []
    for module_name, class_name in ALGORITHM_MODULES:
        full_name = f"{__name__}.{module_name}"
        try:
            module = import_module(full_name)
        except ModuleNotFoundError as err:
            if err.name == full_name:
                continue
            raise
        classes.append(getattr(module, class_name))
    return classes
