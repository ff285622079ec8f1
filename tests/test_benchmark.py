"""The bench harness: its timing loop (fastconv.benchmark.machine.interleaved_times), its sweeps and
medians (measure), and the speed issue's targets."""
import time
from types import SimpleNamespace

import fastconv as fc

from fastconv.benchmark import measure, target
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


def test_targets_follow_the_speed_issue():
    row = lambda group, op, **kw: dict(group=group, op=op, **kw)
    assert target(row("S1", "conv2d", torch_pct_peak=80)) == 1.0
    assert target(row("S3", "conv2d")) == 1.6 and target(row("S4", "conv2d_input_grad")) == 1.6    # Winograd
    assert target(row("S4", "conv2d_weight_grad")) == 1.3 and target(row("V3", "conv2d")) == 1.6
    assert target(row("S2", "conv2d")) == 1.3 and target(row("S5", "conv2d_input_grad")) == 1.4  # 5x5, dilated
    assert target(row("S2", "conv2d_weight_grad", torch_pct_peak=95)) == 0.9  # PyTorch above 90% of the GEMM peak
    assert target(row("S6", "conv2d_input_grad", torch_pct_peak=20)) == 2.0
    assert target(row("S7", "conv2d_weight_grad")) == 3.0
    assert target(row("S8", "correlate2d")) == 5.0
    assert target(row("P1", "max_pool2d")) == 5.0 and target(row("P1", "max_unpool2d")) == 1.5
    assert target(row("U1", "unshared_conv2d")) == 5.0
    assert abs(target(row("T1", "tiled_conv2d", ratio_vs="dense")) - 2 / 3) < 1e-12


def test_measure_sweeps_the_table_and_takes_medians():
    """Each repeat sweeps every case (a row's repeats lie a table apart); rates and ratios are medians
    over the sweeps, and every case is validated before any is timed."""
    events = []
    schedule = {"A": [(2.0, 1.0), (2.0, 4.0), (2.0, 2.0)], "B": [(1.0, 2.0), (9.0, 3.0), (1.0, 3.0)]}

    def case(name):
        def check():
            events.append(("check", name))
            return True, 0.5
        return SimpleNamespace(group=name, op="conv2d", shape="s", unit="GFLOP/s", work=1e9, base=None,
                               impls={"fastconv": name, "torch": name}, check=check, algorithm="direct")

    def timer(impls):
        name = impls["fastconv"]
        events.append(("time", name))
        fast, torch = schedule[name][sum(e == ("time", name) for e in events) - 1]
        return {"fastconv": fast, "torch": torch}

    rows = measure([case("A"), case("B")], 3, log=lambda *a, **k: None, timer=timer)
    assert events == [("check", "A"), ("check", "B")] + [("time", "A"), ("time", "B")] * 3
    a, b = rows
    assert a["ratio"] == 1.0 and b["ratio"] == 2.0        # medians of torch/fastconv: 0.5, 2, 1 and 2, 1/3, 3
    assert a["fastconv"] == 0.5 and b["fastconv"] == 1.0  # median rates (work / time): 0.5 x3 and 1, 1/9, 1
    assert a["torch"] == 0.5 and abs(b["torch"] - 1 / 3) < 1e-12
    assert a["passed"] and a["numpy"] == 0.5


def test_auto_is_held_to_the_best_forced_algorithm_that_runs_another_kernel():
    """auto/best per sweep: fastconv's time over the best of its own and each forced algorithm's, median
    over sweeps; the forced algorithm whose kernel 'auto' runs is not timed a second time."""
    from fastconv.benchmark import _row, cases
    from fastconv.benchmark.shapes import CONV_SHAPES
    case = SimpleNamespace(group="S3", op="conv2d", shape="s", unit="GFLOP/s", work=1e9, base=None, algorithm="w")
    ts = {"fastconv": [1.0, 1.0, 1.0], "torch": [2.0] * 3, "direct": [2.0, 0.5, 0.8]}
    assert _row(case, (True, 1.0), ts)["auto_vs_best"] == 1.25  # medians of 1, 2 and 1.25
    if "cpp" in fc.available_backends():
        import numpy as np
        s = CONV_SHAPES["S3"]
        x, w, dy = (np.zeros(shape, np.float32) for shape in (s.x_shape, s.w_shape, s.y_shape()))
        assert fc.kernel_for("conv2d", x, w, **s.kwargs).algorithm == "winograd"
        assert set(cases._forced("conv2d", s, x, w, dy)) == {"direct"}


def test_small_call_times_the_op_and_the_kernel_alone():
    from fastconv.benchmark import machine
    out = machine.small_call(100.0)
    assert out["total_us"] > 0 and out["arith_us"] > 0 and out["overhead_us"] == out["total_us"] - out["arith_us"]
    if "cpp" in fc.available_backends():
        assert 0 < out["kernel_us"]
