// kernels.h — the table of entry points that one ISA build of the kernels exports.
//
// The kernels are compiled once per ISA level (sse2, avx2, avx512 on x86-64; neon on aarch64), each
// level into a shared library of its own (libfastconv_<isa>.so) that exports nothing but
// fastconv_kernel_table(). The front (dispatch.cpp, inside libfastconv.so) loads the best level the
// CPU runs and calls every kernel through this table, so no code compiled for a wider ISA is ever
// reached on a CPU without it. Separate libraries rather than namespaces in one: the kernels
// instantiate standard-library templates, and the linker would keep one copy of each for all levels.
#pragma once

#include <cstdint>

#include "conv2d.h"
#include "pool.h"
#include "tiled_conv.h"

namespace fastconv {

// Bumped whenever the table's layout changes: the front refuses a library built with another.
constexpr int kKernelTableVersion = 1;

// One dtype's kernels (signatures as in conv2d.h, tiled_conv.h, pool.h).
template <typename T>
struct KernelOps {
    void (*conv2d)(const T* x, const T* w, const T* b, T* y, const ConvShape& s);
    void (*conv2d_input_grad)(const T* dy, const T* w, T* dx, const ConvShape& s);
    void (*conv2d_weight_grad)(const T* x, const T* dy, T* dw, const ConvShape& s);
    void (*tiled_conv2d)(const T* x, const T* w, const T* b, T* y, const LocalShape& s);
    void (*tiled_conv2d_input_grad)(const T* dy, const T* w, T* dx, const LocalShape& s);
    void (*tiled_conv2d_weight_grad)(const T* x, const T* dy, T* dw, const LocalShape& s);
    void (*max_pool2d)(const T* x, T* y, int64_t* switches, const PoolShape& s);
    long (*max_unpool2d)(const T* y, const int64_t* switches, T* out, long planes, long plane_in, long plane_out);
};

struct KernelTable {
    int version;         // kKernelTableVersion of the library
    const char* isa;     // "sse2", "avx2", "avx512", "neon", or "generic"
    int vector_bytes;    // width of the vectors the kernels compute with
    int tile_f32[2];     // GEMM register tile (MR, NR), float32
    int tile_f64[2];     // ... and float64
    void (*set_num_threads)(int n);
    int (*get_num_threads)();
    KernelOps<float> f32;
    KernelOps<double> f64;

    template <typename T>
    const KernelOps<T>& ops() const {
        if constexpr (sizeof(T) == sizeof(float)) return f32; else return f64;
    }
};

}  // namespace fastconv

// The one symbol a kernel library exports.
extern "C" const fastconv::KernelTable* fastconv_kernel_table(void);
