"""Start-up objects are kept out of the periodic full collections."""

from __future__ import annotations

import gc

from jggl_common.runtime import freeze_startup_heap


def test_what_exists_after_start_up_is_frozen_and_later_garbage_is_still_collected() -> None:
    class Node:
        def __init__(self) -> None:
            self.other: Node | None = None

    kept = [Node() for _ in range(1000)]
    frozen = freeze_startup_heap()
    try:
        assert frozen >= 1000
        walked = {id(obj) for obj in gc.get_objects()}  # every generation a collection walks
        assert not any(id(node) in walked for node in kept)
        # A cycle made afterwards is garbage the collector still finds.
        a, b = Node(), Node()
        a.other, b.other = b, a
        del a, b
        assert gc.collect() >= 2
    finally:
        gc.unfreeze()
