"""Minimum-cost assignment with the tie-breaking of the ``munkres`` package the official HigherHRNet uses.

The grouping of bottom-up pose (:mod:`hrstream.pose.bottomup_group`) assigns detected joints to people by
``round(tag distance) * 100 - score``: many assignments share the optimal cost, and which one is returned
decides who gets which joint. ``scipy.optimize.linear_sum_assignment`` returns *an* optimal assignment, not
necessarily the same one, so this module implements the Kuhn-Munkres steps (R. A. Pilgrim's formulation
for rectangular matrices) in the order the ``munkres`` package (1.0.x-1.1.x) performs them:

* the matrix is made square by appending rows of zeros (the official caller never has more rows than
  columns: it pads extra rows' columns with ``1e10`` itself);
* step 1 subtracts each row's minimum; step 2 stars, row by row, the first zero whose row and column hold
  no star yet;
* step 4 looks for an uncovered zero starting at the previous one's row and column; in the first row (in
  wrap-around order) holding one, it takes the *last* such zero met when scanning the columns from that
  column onwards, wrapping around;
* step 6 adds the smallest uncovered value to the covered rows, then subtracts it from the uncovered columns.

The arithmetic is elementwise float64, as in the package (numpy float64 entries, Python ints in the padding
rows), so the same zeros appear. Sizes are at most ``MAX_NUM_PEOPLE`` (30) square: plain loops suffice.
"""

from __future__ import annotations

import numpy as np

__all__ = ["munkres_pairs"]

_STAR, _PRIME = 1, 2


def _find_zero(c: np.ndarray, row_cov: np.ndarray, col_cov: np.ndarray, i0: int, j0: int) -> tuple[int, int]:
    n = c.shape[0]
    free = (c == 0) & ~row_cov[:, None] & ~col_cov[None, :]
    cols = np.r_[j0:n, 0:j0]
    for i in np.r_[i0:n, 0:i0]:
        hits = np.flatnonzero(free[i, cols])
        if hits.size:
            return int(i), int(cols[hits[-1]])  # the package keeps scanning the row: the last zero wins
    return -1, -1


def _augment(marked: np.ndarray, r0: int, c0: int) -> None:
    """Step 5: flip stars and primes along the alternating path starting at the primed zero ``(r0, c0)``."""
    path = [(r0, c0)]
    while True:
        rows = np.flatnonzero(marked[:, path[-1][1]] == _STAR)
        if rows.size == 0:
            break
        r = int(rows[0])
        path.append((r, path[-1][1]))
        c = int(np.flatnonzero(marked[r] == _PRIME)[0])
        path.append((r, c))
    for r, c in path:
        marked[r, c] = 0 if marked[r, c] == _STAR else _STAR
    marked[marked == _PRIME] = 0


def munkres_pairs(cost: np.ndarray) -> list[tuple[int, int]]:
    """``(row, col)`` pairs of a minimum-cost assignment of a ``(rows, cols)`` cost matrix, row-major order,
    equal to ``munkres.Munkres().compute(cost)`` (see the module docstring). ``rows <= cols`` is expected;
    with more rows, the extra rows are matched to padding columns and left out as the package does.
    """
    cost = np.asarray(cost, dtype=np.float64)
    rows, cols = cost.shape
    n = max(rows, cols)
    c = np.zeros((n, n), dtype=np.float64)
    c[:rows, :cols] = cost
    c -= c.min(axis=1, keepdims=True)  # step 1
    marked = np.zeros((n, n), dtype=np.int8)
    row_cov = np.zeros(n, dtype=bool)
    col_cov = np.zeros(n, dtype=bool)
    for i in range(n):  # step 2
        free = np.flatnonzero((c[i] == 0) & ~col_cov)
        if free.size:
            marked[i, free[0]] = _STAR
            col_cov[free[0]] = True
    col_cov[:] = False
    while True:
        col_cov[:] = (marked == _STAR).any(axis=0)  # step 3
        if int(col_cov.sum()) >= n:
            break
        r = c_ = 0
        while True:  # step 4 (and 6 until a path is found)
            r, c_ = _find_zero(c, row_cov, col_cov, r, c_)
            if r < 0:
                m = c[np.ix_(~row_cov, ~col_cov)].min()  # step 6
                c[row_cov, :] += m
                c[:, ~col_cov] -= m
                r = c_ = 0
                continue
            marked[r, c_] = _PRIME
            star = np.flatnonzero(marked[r] == _STAR)
            if star.size:
                c_ = int(star[0])
                row_cov[r] = True
                col_cov[c_] = False
                continue
            _augment(marked, r, c_)  # step 5
            row_cov[:] = False
            col_cov[:] = False
            break
    return [(int(i), int(j)) for i, j in zip(*np.nonzero(marked[:rows, :cols] == _STAR), strict=True)]
