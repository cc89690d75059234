"""Kaskada 0.6.1 internals used by the conversation query (`sessionizer.query`), fenced here.

Kaskada is pinned (`kaskada==0.6.1`); tests/shared/test_shims.py fails loudly when an upgrade
moves any of these.
"""

from __future__ import annotations

from typing import Literal

import kaskada as kd
import kaskada._ffi as _ffi


def add_duration(at: kd.Timestream, seconds: int, nanos: int) -> kd.Timestream:
    """`at` plus a duration literal of `seconds` + `nanos`, to the nanosecond.

    Touches `kaskada._ffi.Expr.literal_timedelta`, `Timestream._ffi_expr` (for its session) and
    `Timestream._call("add_time", ...)`: the public `Timestream.add` rounds durations to whole
    seconds, and gaps are fractional in time-compressed replays (the demo).
    """
    duration = kd.Timestream(_ffi.Expr.literal_timedelta(at._ffi_expr.session(), seconds, nanos))
    result: kd.Timestream = kd.Timestream._call("add_time", duration, at)
    return result


def execute(query: kd.Timestream, mode: Literal["once", "live"]) -> _ffi.Execution:
    """Start the query and return Kaskada's execution handle (batches of Arrow tables).

    Touches `Timestream._execute`, what `run_iter` calls inside: `run_iter("pyarrow")` cannot be
    iterated asynchronously in 0.6.1, and `run_iter("row")` costs more than the query itself.
    """
    execution: _ffi.Execution = query._execute(None, mode=mode)
    return execution
