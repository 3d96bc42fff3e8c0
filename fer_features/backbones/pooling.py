"""The pooling option (avg, max, gridN): its help text and its parser."""
from __future__ import annotations

import re

from fer_features.errors import BackboneError

POOLINGS_HELP = "avg | max | gridN (average over an N x N grid of cells, concatenated; e.g. grid2)"


def parse_pooling(pooling: str) -> tuple[str, int]:
    """``'avg'`` -> ('avg', 1), ``'max'`` -> ('max', 1), ``'grid2'`` -> ('grid', 2)."""
    if pooling in ("avg", "max"):
        return pooling, 1
    m = re.fullmatch(r"grid(\d+)", pooling or "")
    if m and int(m.group(1)) >= 1:
        return "grid", int(m.group(1))
    raise BackboneError(f"unknown pooling {pooling!r}: use {POOLINGS_HELP}")
