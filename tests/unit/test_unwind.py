from aperture.agent.collectors.unwind import trim_user_stack
from aperture.model import Frame, FrameKind

LEAF = Frame("leaf", "app")
MID = Frame("mid", "libc.so.6")
UNK = Frame("[unknown]", "[unknown]", FrameKind.UNKNOWN)
NOISE = Frame("noise", "app")


def test_stack_is_cut_at_the_first_unmapped_return_address() -> None:
    leaf_first = [LEAF, MID, UNK, NOISE, UNK, UNK]
    assert trim_user_stack(leaf_first) == (UNK, MID, LEAF)


def test_a_clean_stack_is_only_reversed() -> None:
    assert trim_user_stack([LEAF, MID, NOISE]) == (NOISE, MID, LEAF)


def test_an_unknown_leaf_is_kept() -> None:
    assert trim_user_stack([UNK, MID]) == (MID, UNK)
