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
#include <cstring>
#include <stdexcept>
#include <string>

#include "batch_norm.h"
#include "conv2d.h"
#include "pool.h"
#include "tiled_conv.h"

namespace fastconv {

// Bumped whenever the table's layout changes: the front refuses a library built with another.
constexpr int kKernelTableVersion = 6;

// One implementation of an op (XNNPACK-style name op__variant). why_not(s) is null when it computes s
// correctly, else the reason it cannot; worth(s) (null: always) says whether it pays on s — false
// keeps it out of the automatic choice, never out of a forced one. algorithm: 'direct' (results that
// do not depend on which direct kernel runs), 'winograd' or 'fft'; tile: the algorithm's tile, if any.
template <typename Shape, typename Run>
struct Impl {
    const char* name;
    const char* (*why_not)(const Shape& s);
    bool (*worth)(const Shape& s);
    Run run;
    const char* algorithm = "direct";
    const char* tile = "";
};

// An op's implementations, best first (oneDNN's implementation list). select() is the one place that
// decides which kernel runs: the first that can run s and pays, or the one named by `forced`.
// `algorithm` (null, "" or "auto": any) keeps only that algorithm's implementations: the first that
// can run s and pays, else the first that can run s, else std::invalid_argument naming why none can.
template <typename Shape, typename Run>
struct ImplList {
    const Impl<Shape, Run>* impls;
    int count;

    const Impl<Shape, Run>& select(const Shape& s, const char* forced = nullptr,
                                   const char* algorithm = nullptr) const {
        const bool any = !algorithm || !*algorithm || !std::strcmp(algorithm, "auto");
        if (forced && *forced) {
            for (int i = 0; i < count; ++i) {
                const Impl<Shape, Run>& impl = impls[i];
                if (std::strcmp(forced, impl.name)) continue;
                if (!any && std::strcmp(algorithm, impl.algorithm))
                    throw std::invalid_argument(std::string(impl.name) + " is a " + impl.algorithm +
                                                " implementation, not " + algorithm);
                if (const char* why = impl.why_not(s))
                    throw std::invalid_argument(std::string(impl.name) + " does not apply: " + why);
                return impl;
            }
            throw std::invalid_argument(std::string("no implementation named ") + forced);
        }
        const Impl<Shape, Run>* applies = nullptr;
        std::string why_none;
        for (int i = 0; i < count; ++i) {
            const Impl<Shape, Run>& impl = impls[i];
            if (!any && std::strcmp(algorithm, impl.algorithm)) continue;
            if (const char* why = impl.why_not(s)) {
                why_none += std::string(why_none.empty() ? "" : "; ") + impl.name + " " + why;
                continue;
            }
            if (!impl.worth || impl.worth(s)) return impl;
            if (!applies) applies = &impl;
        }
        if (applies) return *applies;
        if (any) return impls[count - 1];  // the last implementation of every op runs every problem
        throw std::invalid_argument(std::string("algorithm '") + algorithm + "' does not apply to this problem: " +
                                    (why_none.empty() ? "this op has no " + std::string(algorithm) + " implementation"
                                                      : why_none));
    }
};

template <typename T> using ConvForward = void (*)(const T* x, const T* w, const T* b, T* y, const ConvShape& s);
// (dy, w) -> dx and (x, dy) -> dw alike: two inputs, one output
template <typename T> using ConvBackward = void (*)(const T* a, const T* b, T* out, const ConvShape& s);
template <typename T> using TiledForward = void (*)(const T* x, const T* w, const T* b, T* y, const TiledShape& s);
template <typename T> using TiledBackward = void (*)(const T* a, const T* b, T* out, const TiledShape& s);
template <typename T> using PoolRun = void (*)(const T* x, T* y, int64_t* switches, const PoolShape& s);
template <typename T> using UnpoolRun = long (*)(const T* y, const int64_t* switches, T* out, const UnpoolShape& s);
template <typename T>
using NormForward = void (*)(const T* x, const T* w, const T* b, T* y, T* mean, T* inv_std, const NormShape& s);
template <typename T>
using NormBackward = void (*)(const T* dy, const T* x, const T* mean, const T* inv_std, const T* w, const T* b,
                              T* dx, T* dw, T* db, const NormShape& s);

// One dtype's ops (signatures as in conv2d.h, tiled_conv.h, pool.h, batch_norm.h).
template <typename T>
struct KernelOps {
    ImplList<ConvShape, ConvForward<T>> conv2d;
    ImplList<ConvShape, ConvBackward<T>> conv2d_input_grad, conv2d_weight_grad;
    ImplList<TiledShape, TiledForward<T>> tiled_conv2d, unshared_conv2d;
    ImplList<TiledShape, TiledBackward<T>> tiled_conv2d_input_grad, tiled_conv2d_weight_grad,
        unshared_conv2d_input_grad, unshared_conv2d_weight_grad;
    ImplList<PoolShape, PoolRun<T>> max_pool2d;
    ImplList<UnpoolShape, UnpoolRun<T>> max_unpool2d;
    ImplList<NormShape, NormForward<T>> batch_norm2d;
    ImplList<NormShape, NormBackward<T>> batch_norm2d_grad;
};

struct KernelTable {
    int version;         // kKernelTableVersion of the library
    const char* isa;     // "sse2", "avx2", "avx512", "neon", or "generic"
    int vector_bytes;    // width of the vectors the kernels compute with
    int tile_f32[2];     // GEMM register tile (MR, NR), float32
    int tile_f64[2];     // ... and float64
    void (*set_num_threads)(int n);
    int (*get_num_threads)();
    void (*set_poll)(bool (*poll)());  // see Stop in parallel.h
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
