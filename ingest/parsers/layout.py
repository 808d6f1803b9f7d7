"""Reading order of the boxes on a page: columns left to right, each read top to bottom.

A recursive XY cut. A region splits first into columns, at vertical gutters that run through
all of it; failing that, into horizontal bands, and consecutive bands that share a gutter are
regrouped so their columns are read whole. So a full-width title or figure separates the
column runs above and below it, and paragraph gaps that happen to line up across two columns
do not interleave them.
"""

from __future__ import annotations

from collections.abc import Sequence

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 with y growing downwards

# A column is at least this share of its region's width: narrower strips (bullets, line
# numbers, form labels) are read with their neighbours rather than as columns of their own.
MIN_COLUMN_SHARE = 0.25
# The smallest white gap, in points, that separates two columns.
MIN_GUTTER = 4.0


def reading_order(boxes: Sequence[Box]) -> list[int]:
    """The indices of `boxes` in reading order."""
    return _order(list(range(len(boxes))), boxes)


def _order(indices: list[int], boxes: Sequence[Box]) -> list[int]:
    if len(indices) <= 1:
        return indices
    columns = _columns(indices, boxes)
    if len(columns) > 1:
        return [i for column in columns for i in _order(column, boxes)]
    bands = _bands(indices, boxes)
    if len(bands) == 1:
        return sorted(indices, key=lambda i: (boxes[i][1], boxes[i][0]))
    groups: list[list[int]] = [bands[0]]
    for band in bands[1:]:
        if len(_columns(groups[-1] + band, boxes)) > 1:
            groups[-1] = groups[-1] + band
        else:
            groups.append(band)
    return [i for group in groups for i in _order(group, boxes)]


def _columns(indices: list[int], boxes: Sequence[Box]) -> list[list[int]]:
    """The region cut at vertical gutters, left to right; one part when there are none."""
    by_x = sorted(indices, key=lambda i: boxes[i][0])
    parts: list[list[int]] = [[by_x[0]]]
    right = boxes[by_x[0]][2]
    for i in by_x[1:]:
        if boxes[i][0] - right >= MIN_GUTTER:
            parts.append([i])
        else:
            parts[-1].append(i)
        right = max(right, boxes[i][2])
    if len(parts) == 1:
        return parts
    left_edge = boxes[by_x[0]][0]
    min_width = MIN_COLUMN_SHARE * (max(boxes[i][2] for i in indices) - left_edge)
    columns: list[list[int]] = []
    for part in parts:
        width = max(boxes[i][2] for i in part) - min(boxes[i][0] for i in part)
        if columns and (width < min_width or _width(columns[-1], boxes) < min_width):
            columns[-1] = columns[-1] + part  # too narrow to be a column: joins its left neighbour
        else:
            columns.append(part)
    return columns


def _width(indices: list[int], boxes: Sequence[Box]) -> float:
    return max(boxes[i][2] for i in indices) - min(boxes[i][0] for i in indices)


def _bands(indices: list[int], boxes: Sequence[Box]) -> list[list[int]]:
    """The region cut at horizontal gaps, top to bottom."""
    by_y = sorted(indices, key=lambda i: boxes[i][1])
    bands: list[list[int]] = [[by_y[0]]]
    bottom = boxes[by_y[0]][3]
    for i in by_y[1:]:
        top = boxes[i][1]
        if top >= bottom - 1.0:  # boxes that barely touch are still apart
            bands.append([i])
            bottom = boxes[i][3]
        else:
            bands[-1].append(i)
            bottom = max(bottom, boxes[i][3])
    return bands
