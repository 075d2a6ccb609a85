"""Processing parameters made from the engine's option fields (``engine/config.py``).

An :class:`Option` ties a Processing parameter name (fixed: models and scripts use it) to a field
of an engine config. Its label, default, range, choices and tooltip come from the field, and its
command-line option is the one the engine's CLI generates from the same field, so a default or
a range changed in the engine changes the dialogs, ``qgis_process`` and the CLI alike.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)
from qgis.PyQt.QtCore import QCoreApplication

from ...engine.config import option_flag  # plain dataclasses: no torch, no GDAL

INT, DOUBLE = QgsProcessingParameterNumber.Integer, QgsProcessingParameterNumber.Double


@dataclass(frozen=True)
class Option:
    """The Processing parameter ``param`` for the field ``name`` of the engine config ``config``.

    ``optional``: the parameter may be left empty, and then no option goes to the engine, which
    applies its own default (always so for fields whose default is None, e.g. the overlap
    margin; set it for parameters added after a release, so Processing models saved before
    still run). ``advanced``: shown under the dialog's "Advanced parameters".
    """

    param: str
    config: type
    name: str
    advanced: bool = False
    optional: bool = False

    @property
    def field(self) -> dataclasses.Field[Any]:
        """The engine's field."""
        for candidate in dataclasses.fields(self.config):
            if candidate.name == self.name:
                return candidate
        raise KeyError(f"{self.config.__name__} has no field {self.name!r}")

    @property
    def kind(self) -> str:
        """The field's type without ``None``: ``int``, ``float``, ``bool`` or ``str``."""
        return str(self.field.type).replace(" ", "").split("|")[0]

    @property
    def default(self) -> Any:
        """The engine's default for the field (None when it decides from the data)."""
        return self.field.default

    @property
    def may_be_empty(self) -> bool:
        """True when an empty value is allowed (then the engine decides)."""
        return self.optional or self.default is None

    def definition(self) -> QgsProcessingParameterDefinition:
        """The Processing parameter, with the field's label, default, range and tooltip."""
        meta = self.field.metadata
        label = QCoreApplication.translate("Footprint", str(meta["label"] or self.name))
        if meta["choices"]:
            param = QgsProcessingParameterEnum(
                self.param,
                label,
                list(meta["choices"]),
                defaultValue=self.default,
                optional=self.optional,
                usesStaticStrings=True,
            )
        elif self.kind == "bool":
            # optional when asked: a model saved before the option existed still validates
            param = QgsProcessingParameterBoolean(
                self.param, label, self.default, optional=self.optional
            )
        elif self.kind == "str":
            param = QgsProcessingParameterString(
                self.param, label, self.default, optional=self.may_be_empty
            )
        else:
            param = QgsProcessingParameterNumber(
                self.param,
                label,
                INT if self.kind == "int" else DOUBLE,
                self.default,
                self.may_be_empty,
                *_range(meta),
            )
        param.setHelp(str(meta["help"]))
        if self.advanced:
            param.setFlags(param.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        return param

    def args(
        self,
        alg: QgsProcessingAlgorithm,
        parameters: dict[str, Any],
        context: QgsProcessingContext,
    ) -> list[str]:
        """The engine's option for this run's value ([] when left empty)."""
        flag = option_flag(self.name)
        if self.kind == "bool":
            on = alg.parameterAsBool(parameters, self.param, context)
            return [flag if on else "--no-" + flag[2:]]
        if self.may_be_empty and parameters.get(self.param) in (None, ""):
            return []
        if self.field.metadata["choices"]:
            return [flag, str(alg.parameterAsEnumString(parameters, self.param, context))]
        if self.kind == "str":
            return [flag, str(alg.parameterAsString(parameters, self.param, context))]
        if self.kind == "int":
            return [flag, str(alg.parameterAsInt(parameters, self.param, context))]
        return [flag, repr(alg.parameterAsDouble(parameters, self.param, context))]


def _range(meta: Any) -> tuple[float, float]:
    """Minimum and maximum for a number parameter (QGIS's own limits where the field has none)."""
    low = meta["minimum"] if meta["minimum"] is not None else -1.7976931348623157e308
    high = meta["maximum"] if meta["maximum"] is not None else 1.7976931348623157e308
    return low, high


def add_options(alg: QgsProcessingAlgorithm, options: Iterable[Option]) -> None:
    """Add each option's parameter to ``alg``."""
    for option in options:
        alg.addParameter(option.definition())


def option_args(
    alg: QgsProcessingAlgorithm,
    parameters: dict[str, Any],
    context: QgsProcessingContext,
    options: Iterable[Option],
) -> list[str]:
    """The engine options for every option's value in this run."""
    return [arg for option in options for arg in option.args(alg, parameters, context)]
