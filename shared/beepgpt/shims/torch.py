"""torch internals used by the scorer (the only service that installs torch)."""

from __future__ import annotations


def amx_tile_supported() -> bool:
    """Whether torch sees Intel AMX tiles on this CPU (False when this torch cannot tell).

    Touches `torch.cpu._is_amx_tile_supported`: the CPU flags in /proc/cpuinfo are the first
    answer, but a container may hide them, and torch has no public probe. Looked up at call time
    (tests replace it); whatever the probe raises is the caller's to handle.
    """
    import torch

    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(probe()) if probe is not None else False
