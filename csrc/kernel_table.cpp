// kernel_table.cpp — the table of this ISA build's kernels (see kernels.h); compiled into every
// libfastconv_<isa>.so together with the kernels themselves.
#include "kernels.h"

#include "gemm.h"
#include "parallel.h"
#include "simd.h"

namespace fastconv {
namespace {

template <typename T>
constexpr KernelOps<T> ops_of() {
    return {conv2d<T>,       conv2d_input_grad<T>,       conv2d_weight_grad<T>, tiled_conv2d<T>,
            tiled_conv2d_input_grad<T>, tiled_conv2d_weight_grad<T>, max_pool2d<T>, max_unpool2d<T>};
}

const KernelTable kTable = {
    kKernelTableVersion,
    kSimdName,
    kVectorBytes,
    {Tile<float>::MR, Tile<float>::NR},
    {Tile<double>::MR, Tile<double>::NR},
    set_num_threads,
    get_num_threads,
    ops_of<float>(),
    ops_of<double>(),
};

}  // namespace
}  // namespace fastconv

extern "C" __attribute__((visibility("default"))) const fastconv::KernelTable* fastconv_kernel_table(void) {
    return &fastconv::kTable;
}
