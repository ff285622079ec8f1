"""The bench harness's timing loop (fastconv.benchmark.machine.interleaved_times)."""
import time

from fastconv.benchmark.machine import interleaved_times


def test_interleaved_times_rounds_and_minimum():
    calls = {"fast": 0, "slow": 0}
    order = []

    def impl(name, seconds):
        def fn():
            calls[name] += 1
            order.append(name)
            time.sleep(seconds)
        return fn

    best = interleaved_times({"fast": impl("fast", 0.001), "slow": impl("slow", 0.004)}, budget=0.0, min_rounds=3,
                             block=0.005, settle=0.002)
    # Each round: one untimed call, then timed calls until the block's time is spent (at least one).
    assert calls["fast"] >= 3 * 2 and calls["slow"] >= 3 * 2
    # The implementations take turns: every round runs each one's block once, in order.
    switches = sum(a != b for a, b in zip(order, order[1:]))
    assert switches == 2 * 3 - 1
    assert 0.001 <= best["fast"] < best["slow"] and best["slow"] >= 0.004
