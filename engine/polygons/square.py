"""Square building outlines to their dominant directions, keeping L, T and U shapes and the
walls that neighbours share.

Each group of touching buildings (a coverage: neighbours share their edges exactly) is squared
together, in ground units (pixel rows scaled by the pixel's aspect):

1. Each outline is simplified (Douglas-Peucker; the better of one and two tolerances for a
   noisy one) and its dominant direction found: the length-weighted mean of its edges' angles
   on the 90-degree circle, refined by lines fitted through the traced points along its
   straight edges. A building within ``SAME_DIRECTION`` of its group's direction takes the
   group's, so walls neighbours share can be snapped together.
2. In the rotated frame each edge within ``ANGLE_TOLERANCE`` of an axis is horizontal or
   vertical; edges shorter than a bevel are steps along the nearer axis; longer slanted
   edges keep their own direction (a wing at another angle). Consecutive edges of one
   orientation become one wall, where the traced points along them lie; jogs (walls shorter
   than ``min_wall`` between two parallel walls) and bevels (slanted walls shorter than
   ``max_bevel`` between a horizontal and a vertical one) are dropped.
3. Walls are snapped across the group: parallel walls closer than ``min_wall`` take one
   position (weighted mean), so a wall two houses share stays one wall.
4. Each outline is rebuilt from the intersections of consecutive walls and rotated back.
5. Neighbours whose squared outlines overlap by more than ``min_overlap`` give the overlap to
   the one whose original held more of it (smaller overlaps are left: cutting them would put
   slanted notches in square corners).

An outline stays as it was when it is not rectilinear (less than ``MIN_RECTILINEAR`` of its
perimeter near its axes: a round tank, a curved wall), when fewer than four walls are left,
or when the squared outline is not sound or overlaps its original by less than ``MIN_IOU``.
What this costs and buys on real places is in docs/BENCHMARKS.md (bench/squaring.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import Polygon

#: Edges within this many degrees of an axis are squared to it.
ANGLE_TOLERANCE = 20.0
#: Share of the perimeter that must lie near the two axes for an outline to be squared.
MIN_RECTILINEAR = 0.6
#: A building whose own direction is within this many degrees of its group's takes the
#: group's (so that walls neighbours share can be snapped together).
SAME_DIRECTION = 5.0
#: The squared outline must overlap the original by at least this IoU, else it is not used.
MIN_IOU = 0.75

H, V, OTHER = 0, 1, 2


@dataclass
class Wall:
    """A run of consecutive edges of one orientation: horizontal walls have ``position`` y,
    vertical ones x; other walls are the line through ``start`` and ``end``."""

    kind: int
    position: float
    length: float
    start: tuple[float, float]
    end: tuple[float, float]


def _mean_quad(quad: np.ndarray, weight: np.ndarray) -> float:
    """The weighted mean of angles given as ``4 * angle``."""
    return math.atan2(float((weight * np.sin(quad)).sum()), float((weight * np.cos(quad)).sum()))


def dominant_angle(rings: list[np.ndarray], traced: list[np.ndarray] | None = None) -> float:
    """The dominant direction (radians, in [-pi/4, pi/4]) of the rings' edges.

    The length-weighted mean of the edges' angles on the 90-degree circle, then again over the
    edges within ``ANGLE_TOLERANCE`` of that estimate's axes only (bevels and slanted wings do
    not pull it). With ``traced`` (the outlines before simplification, one per ring), each
    such edge's angle is the line fitted through the traced points along it, which a
    simplification's choice of vertices does not tilt.
    """
    d = np.concatenate([np.diff(ring, axis=0) for ring in rings])
    length = np.hypot(d[:, 0], d[:, 1])
    quad = 4 * np.arctan2(d[:, 1], d[:, 0])
    angle = _mean_quad(quad, length)
    near = np.cos(quad - angle) >= math.cos(math.radians(4 * ANGLE_TOLERANCE))
    if not near.any():
        return angle / 4.0
    if traced is not None:
        first = 0  # each edge is fitted through its own outline's points
        for ring, points in zip(rings, traced, strict=True):
            for i in range(first, first + len(ring) - 1):
                if near[i]:
                    fitted = _fitted_direction(ring[i - first], d[i], points)
                    if fitted is not None:
                        quad[i] = 4 * fitted
            first += len(ring) - 1
    return _mean_quad(quad[near], length[near]) / 4.0


def _fitted_direction(start: np.ndarray, edge: np.ndarray, points: np.ndarray) -> float | None:
    """The direction of the line fitted (total least squares) through the ``points`` along
    the edge (:func:`_along`); None when fewer than 3."""
    near = _along(start, start + edge, points)
    if len(near) < 3:
        return None
    _, _, vt = np.linalg.svd(near - near.mean(axis=0), full_matrices=False)
    return float(math.atan2(vt[0, 1], vt[0, 0]))


def _rotate(xy: np.ndarray, angle: float) -> np.ndarray:
    ca, sa = math.cos(angle), math.sin(angle)
    return np.column_stack([xy[:, 0] * ca - xy[:, 1] * sa, xy[:, 0] * sa + xy[:, 1] * ca])


def _kinds(ring: np.ndarray, snap_below: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Each edge's orientation (H, V or OTHER) in the rotated frame and its length; edges
    shorter than ``snap_below`` take the nearer axis whatever their angle."""
    d = np.diff(ring, axis=0)
    length = np.hypot(d[:, 0], d[:, 1])
    angle = np.degrees(np.arctan2(d[:, 1], d[:, 0])) % 180.0
    off_h = np.minimum(angle, 180.0 - angle)
    off_v = np.abs(angle - 90.0)
    kinds = np.full(len(d), OTHER)
    short = length < snap_below
    kinds[(off_h <= ANGLE_TOLERANCE) | (short & (off_h <= off_v))] = H
    kinds[(off_v <= ANGLE_TOLERANCE) | (short & (off_v < off_h))] = V
    return kinds, length


def rectilinear_share(ring: np.ndarray) -> float:
    """Share of the (rotated) ring's perimeter near the axes."""
    kinds, length = _kinds(ring)
    total = float(length.sum())
    return float(length[kinds != OTHER].sum()) / total if total > 0 else 0.0


def _runs(ring: np.ndarray, traced: np.ndarray, snap_below: float) -> list[Wall]:
    """Consecutive edges of one orientation as walls (the ring's start rolled to a change);
    edges shorter than ``snap_below`` are steps along the nearer axis, only longer ones keep
    a direction of their own."""
    kinds, length = _kinds(ring, snap_below)
    n = len(kinds)
    changes = np.flatnonzero(kinds != np.roll(kinds, 1))
    if len(changes) == 0:
        return []
    start = int(changes[0])
    walls: list[Wall] = []
    i = 0
    while i < n:
        j = i
        k = kinds[(start + i) % n]
        while j < n and kinds[(start + j) % n] == k:
            j += 1
        idx = [(start + m) % n for m in range(i, j)]
        if k == OTHER:  # each slanted edge keeps its own direction
            walls += [_wall(ring, [e], OTHER, length, traced) for e in idx]
        else:
            walls.append(_wall(ring, idx, int(k), length, traced))
        i = j
    return walls


def _wall(
    ring: np.ndarray, edges: list[int], kind: int, length: np.ndarray, traced: np.ndarray
) -> Wall:
    """One wall from the ring's edges ``edges`` (consecutive). An axis wall lies where the
    traced points along its edges lie (their mean), not where the simplification's vertices
    happened to fall."""
    a, b = ring[edges], ring[[e + 1 for e in edges]]
    w = length[edges]
    total = float(w.sum())
    axis = 1 if kind == H else 0
    mid = (a + b) / 2.0
    position = float((mid[:, axis] * w).sum() / total) if total > 0 else float(mid[0, axis])
    if kind != OTHER:
        along = [_along(p, q, traced) for p, q in zip(a, b, strict=True)]
        points = np.concatenate(along) if along else np.empty((0, 2))
        if len(points) >= 2:
            position = float(points[:, axis].mean())
    return Wall(kind, position, total, tuple(a[0]), tuple(b[-1]))


def _along(start: np.ndarray, end: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The ``points`` along the middle 70% of the segment, within 1.5 units of it."""
    edge = end - start
    length = float(np.hypot(*edge))
    if length <= 0:
        return points[:0]
    unit = edge / length
    rel = points - start
    along = rel @ unit
    across = rel @ np.array([-unit[1], unit[0]])
    keep = (along > 0.15 * length) & (along < 0.85 * length) & (np.abs(across) <= 1.5)
    return np.asarray(points[keep])


def _merge(walls: list[Wall], min_wall: float, max_bevel: float) -> list[Wall]:
    """Drop jogs and bevels until none is left.

    A jog: a wall shorter than ``min_wall``, or slanted walls shorter than ``max_bevel`` in
    all, between two parallel axis walls whose positions are within ``min_wall`` (the two
    merge). A bevel: slanted walls shorter than ``max_bevel`` in all between a horizontal and
    a vertical wall (a rounded corner: the two meet).
    """
    changed = True
    while changed and len(walls) > 4:
        changed = False
        n = len(walls)
        for i in range(n):
            end = i  # the chain i..end: one axis wall, or consecutive slanted ones
            if walls[i].kind == OTHER:
                while end - i < n - 3 and walls[(end + 1) % n].kind == OTHER:
                    end += 1
            chain = [walls[k % n] for k in range(i, end + 1)]
            span = sum(w.length for w in chain)
            prev, nxt = walls[i - 1], walls[(end + 1) % n]
            limit = max_bevel if chain[0].kind == OTHER else min_wall
            if span >= limit or OTHER in (prev.kind, nxt.kind):
                continue
            if prev.kind == nxt.kind and abs(prev.position - nxt.position) < min_wall:
                walls = _join(walls, i, end)
            elif prev.kind != nxt.kind and chain[0].kind == OTHER:
                walls = _without(walls, i, end)
            else:
                continue
            changed = True
            break
    return walls


def _without(walls: list[Wall], first: int, last: int) -> list[Wall]:
    """``walls`` without ``first``..``last`` (cyclic indices)."""
    n = len(walls)
    drop = {k % n for k in range(first, last + 1)}
    return [w for k, w in enumerate(walls) if k not in drop]


def _join(walls: list[Wall], first: int, last: int) -> list[Wall]:
    """Walls ``first - 1`` and ``last + 1`` merged into one, ``first``..``last`` dropped."""
    n = len(walls)
    prev, nxt = walls[first - 1], walls[(last + 1) % n]
    total = prev.length + nxt.length
    position = (prev.position * prev.length + nxt.position * nxt.length) / total
    merged = Wall(prev.kind, position, total, prev.start, nxt.end)
    drop = {k % n for k in range(first, last + 2)}
    keep = (first - 1) % n
    return [merged if k == keep else w for k, w in enumerate(walls) if k not in drop]


def _snap(groups: list[list[Wall]], tolerance: float) -> None:
    """Give parallel axis walls of the whole group closer than ``tolerance`` one position."""
    for kind in (H, V):
        walls = [w for ws in groups for w in ws if w.kind == kind]
        walls.sort(key=lambda w: w.position)
        cluster: list[Wall] = []
        for wall in [*walls, None]:
            if wall is not None and (
                not cluster or wall.position - cluster[0].position < tolerance
            ):
                cluster.append(wall)
                continue
            if cluster:
                total = sum(w.length for w in cluster)
                position = sum(w.position * w.length for w in cluster) / total
                for w in cluster:
                    w.position = position
            cluster = [wall] if wall is not None else []


def _line(wall: Wall) -> tuple[np.ndarray, np.ndarray]:
    """A point on the wall's line and its direction."""
    if wall.kind == H:
        return np.array([0.0, wall.position]), np.array([1.0, 0.0])
    if wall.kind == V:
        return np.array([wall.position, 0.0]), np.array([0.0, 1.0])
    a, b = np.asarray(wall.start), np.asarray(wall.end)
    return a, b - a


def _corner(first: Wall, second: Wall) -> np.ndarray:
    """Where two consecutive walls meet (their lines' intersection; parallel ones: midway)."""
    p, r = _line(first)
    q, s = _line(second)
    cross = r[0] * s[1] - r[1] * s[0]
    if abs(cross) < 1e-9 * (np.hypot(*r) * np.hypot(*s) + 1e-12):
        return np.asarray((np.asarray(first.end) + np.asarray(second.start)) / 2.0)
    t = ((q[0] - p[0]) * s[1] - (q[1] - p[1]) * s[0]) / cross
    return np.asarray(p + t * r)


def _rebuild(walls: list[Wall]) -> Polygon | None:
    """The outline through the corners of consecutive walls (None: too few walls)."""
    if len(walls) < 4:
        return None
    corners = [_corner(walls[i - 1], walls[i]) for i in range(len(walls))]
    return Polygon(corners)


def square_group(
    polygons: list[Polygon],
    aspect: float = 1.0,
    tolerance: float = 1.5,
    min_wall: float = 3.0,
    max_bevel: float = 12.0,
    min_overlap: float = 0.0,
) -> list[Polygon]:
    """Square a group of touching polygons together (see the module's docstring).

    Args:
        polygons: outlines without holes' squaring (holes are kept as they are), in a frame
            where x and y share a unit up to ``aspect``.
        aspect: ground height/width of one unit of y against one of x (a pixel's aspect).
        tolerance: each outline is first simplified (Douglas-Peucker) with this tolerance
            (ground units of x), which removes pixel staircases (twice it when the outlines
            are not rectilinear at it).
        min_wall: walls shorter than this (ground units of x) are jogs; parallel walls closer
            than it take one position.
        max_bevel: slanted walls shorter than this (or than 3 tolerances) between a
            horizontal and a vertical wall are rounded corners, squared; shorter edges are
            steps along the nearer axis.
        min_overlap: overlaps of squared neighbours up to this area (units of the frame) are
            left; larger ones are cut (:func:`_settle`).

    Returns:
        The polygons, each squared or as given.
    """
    if not polygons:
        return []
    traced = [_densified(p, aspect) for p in polygons]
    rings, owns, used = [], [], []
    for points in traced:
        # a noisy outline is more rectilinear simplified at twice the tolerance: the better
        # of the two is read
        tries = []
        for attempt in (tolerance, 2 * tolerance):
            ring = _simplified(points, attempt)
            own = dominant_angle([ring], [points])
            tries.append((rectilinear_share(_rotate(ring, -own)), -attempt, ring, own))
        share, attempt, ring, own = max(tries, key=lambda t: (round(t[0], 2), t[1]))
        rings.append(ring)
        owns.append(own)
        used.append(-attempt)
    group = dominant_angle(rings, traced)
    angles: list[float] = []
    walls: list[list[Wall] | None] = []
    for ring, points, own, attempt in zip(rings, traced, owns, used, strict=True):
        near = _turn(own, group) <= SAME_DIRECTION
        angle = own
        if near and rectilinear_share(_rotate(ring, -group)) >= MIN_RECTILINEAR:
            angle = group
        angles.append(angle)
        rotated = _rotate(ring, -angle)
        if rectilinear_share(rotated) < MIN_RECTILINEAR:
            walls.append(None)
            continue
        bevel = max(max_bevel, 3 * attempt)  # simplification cuts corners by up to its tolerance
        runs = _runs(rotated, _rotate(points, -angle), bevel)
        walls.append(_merge(runs, min_wall, bevel))
    # walls of buildings squared to the group's direction are snapped together
    _snap([w for w, a in zip(walls, angles, strict=True) if w and a == group], min_wall)
    out = []
    for polygon, ws, angle in zip(polygons, walls, angles, strict=True):
        squared = _rebuild(ws) if ws else None
        out.append(_accept(polygon, squared, angle, aspect))
    return _settle(polygons, out, min_overlap)


def _turn(a: float, b: float) -> float:
    """Degrees between two directions modulo 90."""
    d = math.degrees(a - b) % 90.0
    return min(d, 90.0 - d)


def _settle(
    originals: list[Polygon], squared: list[Polygon], min_overlap: float = 0.0
) -> list[Polygon]:
    """No overlaps between neighbours beyond ``min_overlap`` (area units of the frame): where
    two squared outlines overlap more, the overlap goes to the one whose original held more of
    it (smaller ones are left: cutting them would put slanted notches in square corners)."""
    out = list(squared)
    if len(out) < 2:
        return out
    tree = shapely.STRtree(out)
    left, right = tree.query(out, predicate="overlaps")
    for i, j in zip(left.tolist(), right.tolist(), strict=True):
        if i >= j:
            continue
        overlap = shapely.intersection(out[i], out[j])
        if overlap.area <= min_overlap:
            continue
        keep_i = (
            shapely.intersection(overlap, originals[i]).area
            >= shapely.intersection(overlap, originals[j]).area
        )
        loser = j if keep_i else i
        part = _sound(_largest(shapely.difference(out[loser], overlap)))
        if part is None:
            winner = out[i if keep_i else j]
            part = _sound(_largest(shapely.difference(originals[loser], winner)))
        if part is not None:
            out[loser] = part
    return out


#: Outlines with vertices closer than this to another vertex or edge (a spike, a pinch) are
#: cleaned first; they could turn invalid when moved onto the CRS.
MIN_CLEARANCE = 1e-3


def _sound(polygon: Polygon | None) -> Polygon | None:
    """``polygon`` valid, without spikes or pinches (cleaned when it has them), normalised;
    None when it cannot be."""
    if polygon is None or polygon.is_empty:
        return None
    if not polygon.is_valid or shapely.minimum_clearance(polygon) < MIN_CLEARANCE:
        polygon = _largest(shapely.make_valid(shapely.simplify(polygon.buffer(0), 0.0)))
        if polygon is None or not polygon.is_valid:
            return None
        if shapely.minimum_clearance(polygon) < MIN_CLEARANCE:
            return None
    return shapely.normalize(shapely.simplify(polygon, 0.0))


def _largest(geom: shapely.Geometry) -> Polygon | None:
    """The largest polygon of ``geom`` (None when it holds none)."""
    parts = [g for g in getattr(geom, "geoms", [geom]) if isinstance(g, Polygon) and g.area > 0]
    return max(parts, key=lambda g: g.area) if parts else None


def _simplified(points: np.ndarray, tolerance: float) -> np.ndarray:
    """The ring ``points`` simplified (Douglas-Peucker), as given when that fails."""
    smooth = shapely.simplify(Polygon(points), tolerance)
    if not isinstance(smooth, Polygon) or smooth.is_empty:
        return points
    return np.asarray(smooth.exterior.coords, dtype=np.float64)


def _densified(polygon: Polygon, aspect: float) -> np.ndarray:
    """The outline's points in ground units, one at least every unit along it."""
    xy = np.asarray(shapely.segmentize(polygon.exterior, 1.0).coords, dtype=np.float64)
    return np.column_stack([xy[:, 0], xy[:, 1] * aspect])


def _accept(original: Polygon, squared: Polygon | None, angle: float, aspect: float) -> Polygon:
    """``squared`` rotated back into the original's frame, when it is a good stand-in."""
    if squared is None:
        return original
    xy = _rotate(np.asarray(squared.exterior.coords), angle)
    candidate = _sound(Polygon(np.column_stack([xy[:, 0], xy[:, 1] / aspect])))
    if candidate is None:
        return original
    # courtyards stay as they were; holes cut by the new outline were wobble of the old one
    holes = [h for h in (Polygon(r) for r in original.interiors) if candidate.contains(h)]
    if holes:
        candidate = Polygon(candidate.exterior, [h.exterior for h in holes])
        if not candidate.is_valid:
            return original
    union = shapely.union(candidate, original).area
    if union <= 0 or shapely.intersection(candidate, original).area / union < MIN_IOU:
        return original
    return shapely.normalize(shapely.simplify(candidate, 0.0))
