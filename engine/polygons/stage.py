"""The building stage: blocks of probability in, buildings out.

One owner for "probability to buildings", used by ``detect`` (in one process and on a
cluster) and ``vectorize``. It is built once from the model's class layout
(:class:`ClassLayout`), the polygon settings (:class:`StageSettings`: threshold, seeds +
watershed, the contact split of older models), the ground size of a pixel and the polygon
stream it writes to, and then takes, in row-major order:

- finished probability blocks (:meth:`BuildingStage.add`): with a separation class they are
  gathered into halo blocks (:class:`engine.polygons.blocks.HaloAssembler`), labelled by seeds
  + watershed and cut into pieces in a pool of threads (:class:`engine.background.OrderedPool`);
  without one, each block's pixels above the threshold are its pieces;
- halo blocks read by the caller (:meth:`BuildingStage.add_halo`, vectorize's windows);
- blocks already cut into pieces elsewhere (:meth:`BuildingStage.add_cut`, a cluster worker's).

The pieces are joined across seams (:class:`engine.polygons.seams.SeamJoiner`) and complete
buildings go to the stream as soon as they are complete.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

import numpy as np

from engine.background import OrderedPool
from engine.inference.blend import Block
from engine.polygons.blocks import INSTANCE_BLOCK, HaloAssembler, HaloBlock, halo_pixels
from engine.polygons.instances import InstanceParams, InstanceSettings
from engine.polygons.seams import Cut, PolygonStream, SeamJoiner, cut_block, cut_plain


@dataclass(frozen=True)
class ClassLayout:
    """Which band of a probability block is which class: building, separation (seeds +
    watershed) and contact (the split of models made before separation), None when absent."""

    building: int = 0
    separation: int | None = None
    contact: int | None = None

    @classmethod
    def of(cls, classes: Sequence[str]) -> ClassLayout:
        """The layout of a model's classes (its spec's ``classes``)."""
        index = {name: i for i, name in enumerate(classes)}
        return cls(index.get("building", 0), index.get("separation"), index.get("contact"))


@dataclass(frozen=True)
class StageSettings:
    """How probability becomes buildings, in ground units: the building ``threshold``, the
    seeds + watershed settings (used with a separation class) and the contact probability that
    splits buildings (used with a contact class)."""

    threshold: float
    instances: InstanceSettings
    contact_threshold: float = 0.5


@dataclass(frozen=True)
class CutSettings:
    """What cutting blocks into pieces needs, in the grid's pixels (what a cluster worker gets
    to cut its strip): the layout, the threshold, the contact split, and the seeds + watershed
    parameters with their halo (None, 0: plain pieces)."""

    layout: ClassLayout
    threshold: float
    contact_threshold: float
    params: InstanceParams | None = None
    halo: int = 0


class BuildingStage:
    """Turns blocks of a ``width`` x ``height`` grid of ``pixel_m`` ground pixels into
    buildings written to ``stream`` (see the module doc); ``incoming``: the side of the blocks
    :meth:`add` takes (the halo is at most one of them), ``workers``: threads cutting halo
    blocks side by side. Use it as a context manager; :meth:`finish` ends the work."""

    def __init__(
        self,
        layout: ClassLayout,
        settings: StageSettings,
        grid: tuple[int, int, float],
        stream: PolygonStream,
        incoming: int,
        workers: int = 1,
    ) -> None:
        width, height, pixel_m = grid
        self.layout, self.settings, self.stream = layout, settings, stream
        self._size, self.incoming = (width, height), incoming
        self.joiner = SeamJoiner(width, height, settings.threshold)
        self.params: InstanceParams | None = None
        self.halo = 0
        self._assembler: HaloAssembler | None = None
        self._pool: OrderedPool[HaloBlock, Cut] | None = None
        if layout.separation is not None:
            self.params = settings.instances.params(pixel_m)
            self.halo = halo_pixels(pixel_m, incoming)
            cut = functools.partial(
                cut_block, params=self.params, building=layout.building,
                separation=layout.separation,
            )  # fmt: skip
            self._pool = OrderedPool(cut, workers, "footprint-instances")

    def __enter__(self) -> BuildingStage:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._pool is not None:
            self._pool.__exit__(exc_type, exc, tb)

    @property
    def cut_settings(self) -> CutSettings:
        """How this stage cuts blocks, for cutting them elsewhere (:meth:`add_cut` joins)."""
        return CutSettings(
            self.layout, self.settings.threshold, self.settings.contact_threshold, self.params,
            self.halo,
        )  # fmt: skip

    @property
    def held_rows(self) -> int:
        """Rows of the grid held across its width besides the caller's: the halo strip of
        :class:`engine.polygons.blocks.HaloAssembler` (0 without seeds + watershed)."""
        return self.halo + INSTANCE_BLOCK + self.incoming if self.params is not None else 0

    def add(self, block: Block) -> None:
        """Take one finished probability block (all classes) of side ``incoming``."""
        if self.params is not None:
            if self._assembler is None:
                width, height = self._size
                self._assembler = HaloAssembler(
                    width, height, INSTANCE_BLOCK, self.halo, self.incoming
                )
            for ready in self._assembler.add(block.window, block.data, block.valid):
                self.add_halo(ready)
            return
        self.add_cut(cut_plain_block(block, self.cut_settings))

    def add_halo(self, block: HaloBlock) -> None:
        """Take one halo block (seeds + watershed: a model with a separation class)."""
        if self._pool is None:
            raise ValueError("Halo blocks need a separation class.")
        for cut in self._pool.submit(block):
            self.add_cut(cut)

    def add_cut(self, cut: Cut) -> None:
        """Take one block already cut into pieces."""
        self.stream.add(self.joiner.join(cut))

    def finish(self) -> SeamJoiner:
        """Join what is still in flight, write the last buildings; return the joiner (its
        largest value seen)."""
        if self._pool is not None:
            for cut in self._pool.drain():
                self.add_cut(cut)
        self.stream.add(self.joiner.finish())
        return self.joiner

    def describe(self) -> str:
        """How touching buildings are told apart, for the log ("" when they are not)."""
        if self.layout.separation is not None:
            return f"; touching buildings: {self.settings.instances.describe()}."
        if self.layout.contact is not None:
            threshold = self.settings.contact_threshold
            return f", contact probability >= {threshold:g} splits touching buildings."
        return "."


def cut_plain_block(block: Block, cutting: CutSettings) -> Cut:
    """The pieces of a probability block without seeds + watershed: its valid pixels whose
    building probability reaches the threshold, less those with contact probability at or
    above the contact threshold where the model has a contact class."""
    valid, layout = block.valid, cutting.layout
    if layout.contact is not None:
        valid = np.asarray(valid & (block.data[layout.contact] < cutting.contact_threshold))
    return cut_plain(block.window, block.data[layout.building], valid, cutting.threshold)
