"""Polygons from probability blocks: windows polygonized one by one, pieces that cross a seam
joined, finished buildings cleaned and written batch by batch.

Windows are polygonized separately (4-connectivity, like ``rasterio.features.shapes`` on the
whole raster) and polygons that cross a window seam are joined, so the result equals
polygonizing the whole raster at once while memory depends on the window size and on the
polygons still open along the seams, never on the raster size. ``vectorize`` and ``detect``
both use it::

    joiner = SeamJoiner(width, height, threshold)
    with VectorWriter(output, overwrite, "Polygon") as writer:
        stream = PolygonStream(writer, crs, options, transform)
        for window, probability, valid in pieces:   # row-major, regular grid (see below)
            stream.add(joiner.add(window, probability, valid))
        stream.add(joiner.finish())                 # nothing left when the grid was complete
        stream.close()                              # cleaned and written in batches

- ``pieces`` are ``(rasterio Window, float array (h, w), bool valid array (h, w))`` on a
  regular grid of windows of one size (:meth:`engine.geo.windows.Grid.blocks`; the last row
  and column may be smaller), given in row-major order. Windows must not overlap and must
  cover the raster.
- A :class:`Building` holds the polygon in *pixel* coordinates of the whole raster
  (x = column, y = row, pixel corners on integers), its pixel count and the sum of its
  probabilities clipped to [0, 1]; ``score`` is their mean (exact across seams).
- :func:`polygonize_windows` wraps the loop above as a generator.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, NamedTuple

import numpy as np
import shapely
from affine import Affine
from rasterio import features
from rasterio.windows import Window
from shapely.geometry import Polygon

from engine.config import PolygonOptions
from engine.errors import ConfigError
from engine.geo.vectors import VectorWriter
from engine.heap import release_free_memory
from engine.polygons.blocks import HaloBlock, LabelledBlock, Ring, label_block
from engine.polygons.instances import InstanceParams, component_labels
from engine.polygons.shapes import canonical_polygon, finalize_polygons


@dataclass(frozen=True)
class Building:
    """One finished polygon in pixel coordinates, with its pixel count and probability sum."""

    geometry: Polygon
    pixels: int
    score_sum: float

    @property
    def score(self) -> float:
        """Mean probability over the polygon's pixels."""
        return self.score_sum / self.pixels if self.pixels else 0.0


@dataclass
class _Edge:
    """One side of a finished window, waiting for the neighbour window: piece ids, the
    window's labels along the side and (instances) its labels one pixel beyond it."""

    ids: np.ndarray  # global piece id per pixel along the side, 0 = not building
    local: np.ndarray  # the window's label per pixel along the side
    beyond: np.ndarray | None  # the window's label of the next pixel out (None: plain mask)
    waiting: list[int] = field(default_factory=list)  # pieces touching that side


class SeamJoiner:
    """Polygonizes windows and joins the pieces of buildings that cross window seams.

    A window comes either as probability (:meth:`add`: building where probability >=
    threshold, each 4-connected piece one building) or as instance labels (:meth:`add_labels`:
    each label one building, with the labels of the one-pixel ring outside the window from
    :mod:`engine.polygons.blocks`). Across a seam, pieces touching along a segment belong to
    one *cluster* (touching buildings); they are one *building* when both windows label the two
    pixels alike (for plain masks: always). Pieces meeting only at a corner stay apart
    (4-connectivity). A cluster is emitted, all its buildings together, once every window it
    can reach has been added, so neighbours sharing an edge always leave together (coverage
    simplification needs both). At the start of each row of windows it hands the heap pages
    freed by the previous row back to the OS (:mod:`engine.heap`), so resident memory follows
    what is held (one row of open pieces), not the raster's area.
    """

    def __init__(self, width: int, height: int, threshold: float) -> None:
        self.width, self.height, self.threshold = width, height, threshold
        self.max_value = -math.inf  # largest valid value seen (for "nothing reached" messages)
        self._next_id = 1
        self._parent: dict[int, int] = {}  # clusters (union-find)
        self._members: dict[int, list[int]] = {}
        self._waiting: dict[int, int] = {}  # root -> sides of its pieces not yet joined
        self._same: dict[int, int] = {}  # buildings (union-find, within clusters)
        self._pieces: dict[int, Building] = {}
        self._right: dict[tuple[int, int], _Edge] = {}  # (row_off, col_end)
        self._bottom: dict[tuple[int, int], _Edge] = {}  # (row_end, col_off)

    @property
    def open_pieces(self) -> int:
        """Pieces held while waiting for neighbour windows."""
        return len(self._pieces)

    def add(self, window: Window, probability: np.ndarray, valid: np.ndarray) -> list[Building]:
        """Polygonize one window of probability; return the buildings now complete."""
        return self.join(cut_plain(window, probability, valid, self.threshold))

    def add_block(self, block: LabelledBlock, valid: np.ndarray | None = None) -> list[Building]:
        """:meth:`add_labels` of a labelled block (:func:`engine.polygons.blocks.label_block`)."""
        return self.add_labels(block.window, block.labels, block.probability, block.ring, valid)

    def add_labels(
        self,
        window: Window,
        labels: np.ndarray,
        probability: np.ndarray,
        ring: Ring | None,
        valid: np.ndarray | None = None,
    ) -> list[Building]:
        """Polygonize one window of instance labels (0 = none); return the buildings now
        complete. ``ring`` holds the window's labels one pixel outside it (None: pieces that
        touch across a seam are one building); ``valid`` (optional) marks the pixels whose
        probability counts for the largest value seen."""
        return self.join(cut_labels(window, labels, probability, ring, valid))

    def join(self, cut: Cut) -> list[Building]:
        """Join one window's pieces (:func:`cut_plain`, :func:`cut_labels`; windows of a
        regular grid, in row-major order) to those of the windows before; return the buildings
        now complete."""
        window, found, label_of, cluster_of = cut.window, cut.pieces, cut.label_of, cut.cluster_of
        self.max_value = max(self.max_value, cut.peak)
        col, row = int(window.col_off), int(window.row_off)
        h, w = int(window.height), int(window.width)
        index, labels = cut.piece_sides, cut.label_sides
        if (len(index.left), len(index.top)) != (h, w):
            raise ValueError(
                f"Sides {len(index.left)}x{len(index.top)} do not match window {w}x{h}."
            )
        if col == 0 and row > 0:
            release_free_memory()
        ring = cut.ring
        base = self._next_id - 1
        self._next_id += len(found)
        left, top = _global(index.left, base), _global(index.top, base)
        mine = (
            (left, labels.left, None if ring is None else ring.left),
            (top, labels.top, None if ring is None else ring.top),
        )
        links, resolved = self._take_neighbours(mine, col, row)
        has_right, has_bottom = col + w < self.width, row + h < self.height
        right = _global(index.right, base) if has_right else np.zeros(0, np.int64)
        bottom = _global(index.bottom, base) if has_bottom else np.zeros(0, np.int64)
        waiting = np.zeros(len(found) + 1, np.int64)
        waiting[_ids_on(right) - base] += 1
        waiting[_ids_on(bottom) - base] += 1
        first_label: dict[int, int] = {}
        first_cluster: dict[int, int] = {}
        for i, piece in enumerate(found, start=1):
            gid = base + i
            self._parent[gid], self._members[gid], self._same[gid] = gid, [gid], gid
            self._waiting[gid], self._pieces[gid] = int(waiting[i]), piece
            resolved.append(gid)
            same = first_label.setdefault(int(label_of[i]), gid)
            touching = first_cluster.setdefault(int(cluster_of[i]), gid)
            self._union(touching, gid)
            if same != gid:
                self._union(same, gid)
                self._same[self._find_same(gid)] = self._find_same(same)
        for a, b, one in links.tolist():
            self._union(a, b)
            if one:
                self._same[self._find_same(b)] = self._find_same(a)
        if has_right:
            beyond = None if ring is None else ring.right
            self._right[(row, col + w)] = _Edge(
                right, labels.right, beyond, _ids_on(right).tolist()
            )
        if has_bottom:
            beyond = None if ring is None else ring.bottom
            self._bottom[(row + h, col)] = _Edge(
                bottom, labels.bottom, beyond, _ids_on(bottom).tolist()
            )
        return self._emit_complete(resolved)

    def finish(self) -> list[Building]:
        """Emit whatever is still open (nothing, when every window of the grid was added)."""
        roots = {self._find(g) for g in list(self._pieces)}
        for root in roots:
            self._waiting[root] = 0
        self._right.clear()
        self._bottom.clear()
        return self._emit_complete(list(roots))

    def _take_neighbours(
        self,
        mine: tuple[
            tuple[np.ndarray, np.ndarray, np.ndarray | None],
            tuple[np.ndarray, np.ndarray, np.ndarray | None],
        ],
        col: int,
        row: int,
    ) -> tuple[np.ndarray, list[int]]:
        """Links across the left and top seams as rows ``(id, id, same building)``, and the
        pieces whose pending side those seams resolved."""
        pairs: list[np.ndarray] = []
        resolved: list[int] = []
        for key, store, (ids, local, beyond), side in (
            ((row, col), self._right, mine[0], col > 0),
            ((row, col), self._bottom, mine[1], row > 0),
        ):
            if not side:
                continue
            edge = store.pop(key, None)
            if edge is None or edge.ids.shape != ids.shape:
                raise ValueError(
                    f"Window at column {col}, row {row} does not follow its neighbour: add "
                    "windows of a regular grid in row-major order."
                )
            both = (edge.ids > 0) & (ids > 0)
            same = both.copy()
            if edge.beyond is not None:
                same &= edge.beyond == edge.local
            if beyond is not None:
                same &= beyond == local
            pairs.append(np.column_stack([edge.ids[both], ids[both], same[both]]))
            for gid in edge.waiting:
                self._waiting[self._find(gid)] -= 1
            resolved += edge.waiting
        links = np.unique(np.concatenate(pairs), axis=0) if pairs else np.empty((0, 3), np.int64)
        return links, resolved

    def _find(self, gid: int) -> int:
        return _root(self._parent, gid)

    def _find_same(self, gid: int) -> int:
        return _root(self._same, gid)

    def _union(self, a: int, b: int) -> None:
        ra, rb = self._find(a), self._find(b)
        if ra == rb:
            return
        if len(self._members[ra]) < len(self._members[rb]):
            ra, rb = rb, ra
        self._parent[rb] = ra
        self._members[ra] += self._members.pop(rb)
        self._waiting[ra] += self._waiting.pop(rb)

    def _emit_complete(self, candidates: list[int]) -> list[Building]:
        """Emit the clusters among ``candidates`` that wait for no more windows, one building
        per group of pieces labelled alike."""
        done: list[Building] = []
        for root in sorted({self._find(g) for g in candidates if g in self._parent}):
            if self._waiting[root] > 0:
                continue
            members = self._members.pop(root)
            del self._waiting[root]
            groups: dict[int, list[Building]] = {}
            for g in members:
                groups.setdefault(self._find_same(g), []).append(self._pieces.pop(g))
            for g in members:
                del self._parent[g]
            for g in members:
                del self._same[g]
            done += [_join(parts) for parts in groups.values()]
        return done


class Pieces(NamedTuple):
    """One window's pieces (:func:`block_pieces`): the piece index image (0 = none, 1..n), the
    n pieces, and each piece's label and touching-cluster number (index 0 unused)."""

    image: np.ndarray
    pieces: list[Building]
    label_of: np.ndarray
    cluster_of: np.ndarray


def block_pieces(
    labels: np.ndarray, probability: np.ndarray, col: int, row: int, plain: bool = False
) -> Pieces:
    """The pieces of one window of instance labels whose top-left pixel is (``row``, ``col``)
    of the grid: a function of the window alone, so windows can be cut into pieces in any
    thread (:class:`engine.background.OrderedPool`) before :meth:`SeamJoiner.add_labels` joins
    them in order. ``plain``: the labels are already the pieces (4-connected regions numbered
    1..n, as :func:`engine.polygons.instances.component_labels` gives), so each piece is its
    own label and its own touching cluster and no relabelling is needed."""
    building = labels > 0
    if not building.any():
        empty = np.zeros(1, np.int64)
        return Pieces(np.zeros(labels.shape, np.int32), [], empty, empty)
    shift = Affine.translation(col, row)
    # the pieces, numbered, then one outline per number (4-connected regions of one label
    # value are exactly the polygons GDAL traces): no rasterising of the outlines back
    if plain:
        index = np.asarray(labels, dtype=np.int32)
    else:
        from skimage import measure  # the labelled path only: its import and first call cost

        index = np.asarray(measure.label(labels, background=0, connectivity=1), np.int32)
    n = int(index.max())
    outlines: list[dict[str, Any]] = [{}] * n
    for g, value in features.shapes(index, mask=building, connectivity=4, transform=shift):
        outlines[int(value) - 1] = g
    geoms = _polygons(outlines)
    flat = index.ravel()
    counts = np.bincount(flat, minlength=n + 1)
    sums = np.bincount(flat, weights=np.clip(probability, 0.0, 1.0).ravel(), minlength=n + 1)
    if plain:
        label_of = cluster_of = np.arange(n + 1, dtype=np.int64)
    else:
        label_of = np.zeros(n + 1, np.int64)
        label_of[flat] = labels.ravel()
        cluster_of = np.zeros(n + 1, np.int64)
        cluster_of[flat] = component_labels(building).ravel()
    pieces = [Building(g, int(counts[i]), float(sums[i])) for i, g in enumerate(geoms, start=1)]
    return Pieces(index, pieces, label_of, cluster_of)


class Sides(NamedTuple):
    """The values of a window along its four sides (its first and last column and row)."""

    left: np.ndarray
    top: np.ndarray
    right: np.ndarray
    bottom: np.ndarray

    @classmethod
    def of(cls, image: np.ndarray) -> Sides:
        """The sides of a 2-D array, copied (the array itself is not kept)."""
        return cls(image[:, 0].copy(), image[0, :].copy(), image[:, -1].copy(), image[-1, :].copy())


class Cut(NamedTuple):
    """A window cut into polygon pieces: all :meth:`SeamJoiner.join` needs, and nothing of the
    window's area besides the pieces (what a cluster worker sends back for a block)."""

    window: Window
    pieces: list[Building]
    label_of: np.ndarray  # each piece's label (index 0 unused)
    cluster_of: np.ndarray  # each piece's touching cluster (index 0 unused)
    piece_sides: Sides  # piece numbers along the sides (0: none)
    label_sides: Sides  # labels along the sides
    ring: Ring | None  # labels one pixel outside (None: pieces touching across a seam are one)
    peak: float  # largest valid probability (-inf: none)


def cut_labels(
    window: Window,
    labels: np.ndarray,
    probability: np.ndarray,
    ring: Ring | None,
    valid: np.ndarray | None = None,
    *,
    plain: bool = False,
) -> Cut:
    """The pieces of one window of instance labels (0 = none) whose top-left pixel is the
    window's: a function of the window alone, so windows can be cut side by side (threads,
    cluster workers) and joined in order. ``valid`` marks the pixels whose probability counts
    for the largest value seen (None: none); ``plain``: see :func:`block_pieces`."""
    h, w = int(window.height), int(window.width)
    if labels.shape != (h, w) or probability.shape != (h, w):
        raise ValueError(f"Arrays {labels.shape} do not match window {w}x{h}.")
    index, found, label_of, cluster_of = block_pieces(
        labels, probability, int(window.col_off), int(window.row_off), plain
    )
    peak = -math.inf
    if valid is not None and valid.any():
        peak = float(np.nanmax(np.where(valid, probability, -np.inf)))
    return Cut(window, found, label_of, cluster_of, Sides.of(index), Sides.of(labels), ring, peak)


def cut_plain(window: Window, probability: np.ndarray, valid: np.ndarray, threshold: float) -> Cut:
    """The pieces of one window of probability: its ``valid`` pixels >= ``threshold``,
    4-connected, each one building (see :func:`cut_labels`)."""
    h, w = int(window.height), int(window.width)
    if probability.shape != (h, w) or valid.shape != (h, w):
        raise ValueError(f"Arrays {probability.shape} do not match window {w}x{h}.")
    labels = component_labels(valid & (probability >= threshold))
    return cut_labels(window, labels, probability, None, valid & ~np.isnan(probability), plain=True)


def cut_block(
    block: HaloBlock, params: InstanceParams, building: int = 0, separation: int = 1
) -> Cut:
    """Seeds + watershed on a halo block (:func:`engine.polygons.blocks.label_block`) and its
    pieces (:func:`cut_labels`): everything about a block that needs no other block."""
    done = label_block(block, params, building, separation)
    return cut_labels(
        done.window, done.labels, done.probability, done.ring, block.core(block.valid)
    )


def _root(parent: dict[int, int], gid: int) -> int:
    """The root of ``gid`` in the union-find forest ``parent`` (paths compressed)."""
    root = gid
    while parent[root] != root:
        root = parent[root]
    while parent[gid] != root:
        parent[gid], gid = root, parent[gid]
    return root


def _polygons(outlines: list[Any]) -> list[Polygon]:
    """Shapely polygons from GeoJSON polygon mappings, in one vectorized call."""
    rings = [ring for g in outlines for ring in g["coordinates"]]
    coords = np.array(list(chain.from_iterable(rings)), dtype=np.float64).reshape(-1, 2)
    ring_offsets = np.cumsum([0] + [len(r) for r in rings])
    geom_offsets = np.cumsum([0] + [len(g["coordinates"]) for g in outlines])
    polygons = shapely.from_ragged_array(
        shapely.GeometryType.POLYGON, coords, (ring_offsets, geom_offsets)
    )
    return list(polygons)


def _global(side: np.ndarray, base: int) -> np.ndarray:
    """Window labels along one side as global piece ids (0 stays 0)."""
    side = side.astype(np.int64)
    return np.where(side > 0, side + base, 0)


def _ids_on(side: np.ndarray) -> np.ndarray:
    """Distinct piece ids (> 0) along one side of a window."""
    ids = np.unique(side)
    return ids[ids > 0].astype(np.int64)


def _join(parts: list[Building]) -> Building:
    """One building from pieces that share seam segments."""
    if len(parts) == 1:
        return parts[0]
    geoms = [p.geometry for p in parts]
    try:
        # Pieces never overlap and meet along seams: a coverage. Vertices at every pixel
        # corner make the shared edges identical on both sides, as coverage union needs
        # (1.6x faster than a general union on real predictions; the same polygons).
        geom = shapely.coverage_union_all(shapely.segmentize(geoms, 1.0))
    except shapely.errors.GEOSException:
        # GEOS refused one real prediction's pieces as "incorrectly noded": the general
        # union, slower, takes any input
        geom = shapely.union_all(geoms)
    return Building(
        canonical_polygon(geom),
        sum(p.pixels for p in parts),
        float(sum(p.score_sum for p in parts)),
    )


def polygonize_windows(
    pieces: Iterable[tuple[Window, np.ndarray, np.ndarray]],
    width: int,
    height: int,
    threshold: float,
) -> Iterator[Building]:
    """Finished buildings from ``(window, probability, valid)`` pieces in row-major order."""
    joiner = SeamJoiner(width, height, threshold)
    for window, probability, valid in pieces:
        yield from joiner.add(window, probability, valid)
    yield from joiner.finish()


class PolygonStream:
    """Cleans buildings (:func:`finalize_polygons`) and writes them batch by batch as they are
    finished, so memory holds one batch, never the whole layer; ids run on across batches
    (reading order within a batch). Counts what it wrote.

    Batches are small enough that the last one, cleaned after the model has finished, adds
    little to detect's time (a GeoPackage append costs ~10-30 ms).
    """

    BATCH = 1024

    def __init__(
        self, writer: VectorWriter, crs: Any, config: PolygonOptions, transform: Affine
    ) -> None:
        self.writer, self.crs, self.config, self.transform = writer, crs, config, transform
        self.pending: list[Building] = []
        self.flushed = False  # a batch (maybe empty) has gone to the writer
        self.buildings = 0  # written
        self.dropped = 0  # under min_area_m2
        self.total_area_m2 = 0.0
        self.score_sum = 0.0
        self.low_confidence = 0  # written with low_confidence 1

    def add(self, buildings: list[Building]) -> None:
        """Queue finished buildings; write a batch when enough are queued."""
        self.pending += buildings
        if len(self.pending) >= self.BATCH:
            self._flush()

    def close(self) -> None:
        """Write what is left (an empty layer when nothing was found)."""
        if self.pending or not self.flushed:
            self._flush()

    @property
    def score_mean(self) -> float | None:
        """Mean score of the written buildings (None without any)."""
        return self.score_sum / self.buildings if self.buildings else None

    def _flush(self) -> None:
        batch, self.pending = self.pending, []
        frame = finalize_polygons(
            [b.geometry for b in batch],
            [b.score for b in batch],
            self.crs,
            self.config,
            self.transform,
            first_id=self.buildings + 1,
        )
        self.writer.write(frame)
        self.flushed = True
        self.buildings += len(frame)
        self.dropped += len(batch) - len(frame)
        self.total_area_m2 += float(frame["area_m2"].sum())
        self.score_sum += float(frame["score"].sum())
        self.low_confidence += int(frame["low_confidence"].sum())


def check_polygon_options(options: PolygonOptions, threshold: float) -> None:
    """Raise ConfigError for a threshold or polygon option out of range."""
    if not math.isfinite(threshold) or threshold <= 0:
        raise ConfigError(
            f"Threshold must be a number above 0 (pixels >= threshold are building), got"
            f" {threshold}; use e.g. 0.5 for probabilities or 1 for a 0/1 mask."
        )
    for name in ("min_area_m2", "hole_area_m2", "simplify", "seed_erosion_m", "min_seed_m2"):
        value = getattr(options, name)
        if value is not None and (not math.isfinite(value) or value < 0):
            raise ConfigError(f"{name} must be 0 or more, got {value}; use 0 to turn it off.")
    if not (math.isfinite(options.low_confidence) and 0 <= options.low_confidence <= 1):
        raise ConfigError(
            f"low_confidence must be from 0 to 1 (a mean probability), got"
            f" {options.low_confidence}; 0 marks no building."
        )
    seed = options.seed_threshold
    if seed is not None and not (math.isfinite(seed) and 0 < seed <= 1):
        raise ConfigError(
            f"seed_threshold must be above 0 and at most 1, got {seed}; 0.5-0.7 suits most models."
        )
