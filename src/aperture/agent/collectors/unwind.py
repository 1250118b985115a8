"""Cleaning up frame-pointer unwinds before they become stacks."""

from __future__ import annotations

from collections.abc import Sequence

from aperture.model import Frame, FrameKind


def trim_user_stack(leaf_first: Sequence[Frame]) -> tuple[Frame, ...]:
    """Root-first user frames, cut where the unwind left mapped code.

    A return address in no mapping means the frame-pointer chain broke (a
    caller built without frame pointers): every frame rootward of it was read
    from garbage. Keep the frames up to it and one ``[unknown]`` marker, not a
    run of noise.
    """
    return tuple(reversed(leaf_first[: kept_frames(leaf_first)]))


def kept_frames(leaf_first: Sequence[Frame]) -> int:
    """How many leaf-first frames are true: up to the first one in no mapping, which
    stays as the marker of where the chain broke."""
    for i, frame in enumerate(leaf_first):
        if i and frame.kind is FrameKind.UNKNOWN:
            return i + 1
    return len(leaf_first)
