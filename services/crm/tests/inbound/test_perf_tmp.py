import time, random
import pytest

async def test_perf(harness, to_events, unique_page_id, request):
    import importlib.util, sys
    spec = importlib.util.spec_from_file_location("ordmod", "/work/main/services/crm/tests/inbound/test_ordering.py")
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    page = unique_page_id()
    events = to_events("messenger", page, mod.conversation("messenger", page, seed=11))
    t = time.perf_counter()
    await harness.feed(events)
    print("in-order", len(events), time.perf_counter() - t)
    await harness.reset()
    rng = random.Random(12)
    shuffled = events + rng.sample(events, k=len(events) // 3)
    rng.shuffle(shuffled)
    t = time.perf_counter()
    await harness.feed(shuffled, concurrency=1)
    print("shuffled seq", len(shuffled), time.perf_counter() - t)
    await harness.reset()
    t = time.perf_counter()
    await harness.feed(shuffled, concurrency=8)
    print("shuffled conc", len(shuffled), time.perf_counter() - t)
