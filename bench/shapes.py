"""The benchmark shapes live in the package (fastconv.benchmark.shapes) so `fastconv bench` works from
an installed package; re-exported here for the pytest-benchmark suites."""
from fastconv.benchmark.shapes import (CONV_SHAPES, TILED_SHAPES, PLANE_SHAPES, POOL_SHAPES, SMALL_CALL,  # noqa: F401
                                       ConvBench, PoolBench)
