"""`comp lb --plot`: honest CV against the public leaderboard, one point per scored submission."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from comp.errors import CompError


def lb_points(rows: Iterable[Any]) -> tuple[list[str], list[float], list[float]]:
    """(names, cv, public) of the submissions with both scores. A row is a ``(run, cv, public)``
    tuple or an object with ``run``, ``cv`` and ``public_score`` (a ledger entry)."""
    names, cv, lb = [], [], []
    for row in rows:
        run, c, p = (row.run, row.cv, row.public_score) if hasattr(row, "public_score") else tuple(row)
        if (
            c is None
            or p is None
            or (isinstance(c, float) and math.isnan(c))
            or (isinstance(p, float) and math.isnan(p))
        ):
            continue
        names.append(str(run))
        cv.append(float(c))
        lb.append(float(p))
    return names, cv, lb


def lb_plot(rows: Iterable[Any], out_path: str | Path) -> Path:
    """Scatter of honest CV against public LB for every scored submission, with y = x; see
    :func:`lb_points` for ``rows``."""
    from comp import plots

    names, cv, lb = lb_points(rows)
    if not names:
        raise CompError(
            "no submission has both a CV and a public score yet; `comp lb` refreshes the scores from Kaggle"
        )
    return plots.lb_scatter(names, cv, lb, out_path, f"CV (honest) vs public LB, {len(names)} submission(s)")
