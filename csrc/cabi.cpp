// cabi.cpp — the extern "C" entry points of libfastconv.so (declared in fastconv.h).
//
// Each entry point checks its parameter struct (so that every index the kernel computes stays
// inside the sizes the caller declared), translates C++ exceptions into error codes with a
// per-thread message, and calls the same kernels the Python extension calls, through the table of the
// ISA level chosen for this CPU (dispatch.h).
#include "fastconv.h"

#include <algorithm>
#include <cstdint>
#include <new>
#include <stdexcept>
#include <string>

#include "dispatch.h"

namespace {

thread_local std::string g_last_error;

template <typename T>
const fastconv::KernelOps<T>& kernel() {
    return fastconv::dispatch::kernels().ops<T>();
}

// The registry's choice of implementation for s, run on the arrays.
template <typename List, typename Shape, typename... A>
void run(const List& list, const Shape& s, A... arrays) {
    list.select(s).run(arrays..., s);
}

void require(bool ok, const std::string& what) {
    if (!ok) throw std::invalid_argument(what);
}

template <typename F>
int guarded(const char* op, F&& f) {
    try {
        f();
        return FC_OK;
    } catch (const std::invalid_argument& e) {
        g_last_error = std::string(op) + ": " + e.what();
        return FC_EINVAL;
    } catch (const std::bad_alloc&) {
        g_last_error = std::string(op) + ": out of memory";
        return FC_ENOMEM;
    } catch (const std::exception& e) {
        g_last_error = std::string(op) + ": " + e.what();
        return FC_EINTERNAL;
    }
}

// Geometry in 128-bit arithmetic: no size, padding, stride or dilation a caller passes can overflow it.
using wide = __int128;

// The kernels index padded planes and strided spans in 64-bit arithmetic (as fastconv/_validate.py
// says): a padded input (N·C·H_pad·W_pad) of at most 2**48 elements keeps all of it far from overflow.
constexpr wide kMaxPaddedElements = wide(1) << 48;

void check_padded(int64_t N, int64_t C, wide H_pad, wide W_pad) {
    require(wide(N) * C * H_pad * W_pad <= kMaxPaddedElements,
            "the padded input exceeds 2**48 elements: padding, stride or dilation out of range");
}

// Output sizes may include one extra bottom/right pad row/col (the 'same' rule), never more.
void check_out(int64_t out, int64_t n, int64_t pad, int64_t k, int64_t s, int64_t d, const char* axis) {
    const wide span = wide(n) + 2 * wide(pad) + 1 - wide(d) * (k - 1) - 1;
    const wide most = span < 0 ? 0 : span / s + 1;
    require(out >= 1 && out <= most, std::string(axis) + " = " + std::to_string(out) + " must lie in [1, " +
                                         std::to_string((long long)std::min<wide>(most, INT64_MAX)) +
                                         "] for these sizes, padding and stride");
}

// A stride along an axis of one output never moves its window: 1 gives the same result and keeps the
// kernels' strided index arithmetic within the padded input.
int64_t moving(int64_t stride, int64_t out) { return out > 1 ? stride : 1; }

fastconv::ConvShape conv_shape(const fc_conv_params* p) {
    require(p != nullptr, "params is NULL");
    fastconv::ConvShape s{p->N, p->C_in, p->H, p->W, p->C_out, p->kH, p->kW, p->H_out, p->W_out,
                          p->stride_h, p->stride_w, p->pad_h, p->pad_w, p->dilation_h, p->dilation_w, p->groups};
    fastconv::check_conv_shape(s);
    check_out(s.H_out, s.H, s.ph, s.kH, s.sh, s.dil_h, "H_out");
    check_out(s.W_out, s.W, s.pw, s.kW, s.sw, s.dil_w, "W_out");
    check_padded(s.N, s.C_in, wide(s.H) + 2 * wide(s.ph) + 1, wide(s.W) + 2 * wide(s.pw) + 1);
    s.sh = moving(s.sh, s.H_out), s.sw = moving(s.sw, s.W_out);
    return s;
}

fastconv::TiledShape tiled_shape(const fc_tiled_params* p, bool unshared) {
    require(p != nullptr, "params is NULL");
    fastconv::TiledShape s{p->N, p->C_in, p->H, p->W, p->C_out, p->kH, p->kW, p->H_out, p->W_out,
                           p->stride_h, p->stride_w, p->pad_h, p->pad_w, p->tile_h, p->tile_w, 1, 0, 0};
    if (unshared) s = fastconv::unshared_shape(s);
    fastconv::check_tiled_shape(s);
    check_out(s.H_out, s.H, s.ph, s.kH, s.sh, 1, "H_out");
    check_out(s.W_out, s.W, s.pw, s.kW, s.sw, 1, "W_out");
    check_padded(s.N, s.C_in, wide(s.H) + 2 * wide(s.ph) + 1, wide(s.W) + 2 * wide(s.pw) + 1);
    s.sh = moving(s.sh, s.H_out), s.sw = moving(s.sw, s.W_out);
    return s;
}

fastconv::NormShape norm_shape(const fc_norm_params* p, double eps) {
    require(p != nullptr, "params is NULL");
    require(p->N >= 1 && p->C >= 1 && p->H >= 1 && p->W >= 1, "sizes must be >= 1");
    require(wide(p->N) * p->H * p->W >= 2, "more than one value per channel (N*H*W >= 2) is needed");
    require(wide(p->N) * p->C * p->H * p->W <= kMaxPaddedElements, "x exceeds 2**48 elements");
    require(eps >= 0 && eps <= 1e300, "eps must be a finite number >= 0");
    const fastconv::NormShape s{p->N, p->C, p->H * p->W, eps};
    fastconv::check_norm_shape(s);
    return s;
}

fastconv::PoolShape pool_shape(const fc_pool_params* p, int64_t dil_h = 1, int64_t dil_w = 1) {
    require(p != nullptr, "params is NULL");
    fastconv::PoolShape s{p->N, p->C, p->H, p->W, p->H_out, p->W_out,
                          p->kernel_h, p->kernel_w, p->stride_h, p->stride_w, p->pad_h, p->pad_w, dil_h, dil_w};
    fastconv::check_pool_shape(s);
    // PyTorch's bounds (fastconv/_validate.py's pool_geometry): padding at most half the kernel, and
    // with ceil_mode every window starts inside the input or its top/left padding; a window may reach past
    // the far edge (it is clipped), so a kernel larger than the input leaves one output when ceil_mode's
    // rounding allows it.
    const int64_t n[] = {s.H, s.W}, out[] = {s.H_out, s.W_out}, k[] = {s.kh, s.kw}, st[] = {s.sh, s.sw},
                  pad[] = {s.ph, s.pw}, dil[] = {s.dil_h, s.dil_w};
    for (int a = 0; a < 2; ++a) {
        require(2 * wide(pad[a]) <= k[a], "padding must be at most half the kernel");
        const wide span = wide(dil[a]) * (k[a] - 1) + 1;  // of the dilated kernel
        const wide room = wide(n[a]) + 2 * wide(pad[a]) - span + st[a] - 1;
        wide most = room >= 0 ? room / st[a] + 1 : 0;
        if (most > 0 && (most - 1) * st[a] >= wide(n[a]) + pad[a]) --most;
        require(out[a] >= 1 && out[a] <= most, "output size too large for this kernel, stride, padding and dilation");
    }
    check_padded(s.N, s.C, wide(s.H) + 2 * wide(s.ph), wide(s.W) + 2 * wide(s.pw));
    // Windows are clipped to the input and start at or after -pad: taps at or past H + pad read nothing
    // (fastconv/_validate.py's pool_geometry clips the same way).
    s.kh = std::min<int64_t>(s.kh, (s.H + s.ph - 1) / s.dil_h + 1);
    s.kw = std::min<int64_t>(s.kw, (s.W + s.pw - 1) / s.dil_w + 1);
    s.sh = moving(s.sh, s.H_out), s.sw = moving(s.sw, s.W_out);
    return s;
}

void require_ptrs(std::initializer_list<const void*> ptrs) {
    for (const void* q : ptrs) require(q != nullptr, "array pointer is NULL");
}

// fc_max_pool2d_* and fc_max_pool2d_dilated_*: one body, each entry point's own name in its errors.
template <typename T>
int max_pool2d_entry(const char* op, const fc_pool_params* p, int64_t dil_h, int64_t dil_w, const T* x, T* y,
                     int64_t* switches) {
    return guarded(op, [&] {
        auto s = pool_shape(p, dil_h, dil_w);
        require_ptrs({x, y, switches});
        run(kernel<T>().max_pool2d, s, x, y, switches);
    });
}

}  // namespace

extern "C" {

const char* fc_last_error(void) { return g_last_error.c_str(); }
const char* fc_version(void) { return "0.1.0"; }
void fc_set_num_threads(int n) {
    guarded("fc_set_num_threads", [&] { fastconv::dispatch::set_num_threads(n); });
}

const char* fc_isa(void) {
    const char* isa = nullptr;
    guarded("fc_isa", [&] { isa = fastconv::dispatch::kernels().isa; });
    return isa;
}

int64_t fc_conv_output_size(int64_t n, int64_t pad_before, int64_t pad_after, int64_t k, int64_t stride,
                            int64_t dilation) {
    if (stride < 1 || dilation < 1 || k < 1 || n < 0 || pad_before < 0 || pad_after < 0) return 0;
    const wide span = wide(n) + pad_before + pad_after - wide(dilation) * (k - 1) - 1;
    const wide out = span < 0 ? 0 : span / stride + 1;
    return out > INT64_MAX ? 0 : (int64_t)out;
}

#define FC_DENSE(SUF, T)                                                                       \
    int fc_conv2d_##SUF(const fc_conv_params* p, const T* x, const T* w, const T* b, T* y) {   \
        return guarded("fc_conv2d_" #SUF, [&] {                                                \
            auto s = conv_shape(p);                                                            \
            require_ptrs({x, w, y});                                                           \
            run(kernel<T>().conv2d, s, x, w, b, y);                                            \
        });                                                                                    \
    }                                                                                          \
    int fc_conv2d_input_grad_##SUF(const fc_conv_params* p, const T* dy, const T* w, T* dx) {  \
        return guarded("fc_conv2d_input_grad_" #SUF, [&] {                                     \
            auto s = conv_shape(p);                                                            \
            require_ptrs({dy, w, dx});                                                         \
            run(kernel<T>().conv2d_input_grad, s, dy, w, dx);                                  \
        });                                                                                    \
    }                                                                                          \
    int fc_conv2d_weight_grad_##SUF(const fc_conv_params* p, const T* x, const T* dy, T* dw) { \
        return guarded("fc_conv2d_weight_grad_" #SUF, [&] {                                    \
            auto s = conv_shape(p);                                                            \
            require_ptrs({x, dy, dw});                                                         \
            run(kernel<T>().conv2d_weight_grad, s, x, dy, dw);                                 \
        });                                                                                    \
    }

#define FC_TILED(OP, UNSHARED, SUF, T)                                                          \
    int fc_##OP##_##SUF(const fc_tiled_params* p, const T* x, const T* w, const T* b, T* y) {   \
        return guarded("fc_" #OP "_" #SUF, [&] {                                                \
            auto s = tiled_shape(p, UNSHARED);                                                  \
            require_ptrs({x, w, y});                                                            \
            run(kernel<T>().OP, s, x, w, b, y);                                                 \
        });                                                                                     \
    }                                                                                           \
    int fc_##OP##_input_grad_##SUF(const fc_tiled_params* p, const T* dy, const T* w, T* dx) {  \
        return guarded("fc_" #OP "_input_grad_" #SUF, [&] {                                     \
            auto s = tiled_shape(p, UNSHARED);                                                  \
            require_ptrs({dy, w, dx});                                                          \
            run(kernel<T>().OP##_input_grad, s, dy, w, dx);                                     \
        });                                                                                     \
    }                                                                                           \
    int fc_##OP##_weight_grad_##SUF(const fc_tiled_params* p, const T* x, const T* dy, T* dw) { \
        return guarded("fc_" #OP "_weight_grad_" #SUF, [&] {                                    \
            auto s = tiled_shape(p, UNSHARED);                                                  \
            require_ptrs({x, dy, dw});                                                          \
            run(kernel<T>().OP##_weight_grad, s, x, dy, dw);                                    \
        });                                                                                     \
    }

#define FC_POOL(SUF, T)                                                                                 \
    int fc_max_pool2d_##SUF(const fc_pool_params* p, const T* x, T* y, int64_t* switches) {             \
        return max_pool2d_entry("fc_max_pool2d_" #SUF, p, 1, 1, x, y, switches);                        \
    }                                                                                                   \
    int fc_max_pool2d_dilated_##SUF(const fc_pool_params* p, int64_t dilation_h, int64_t dilation_w,    \
                                    const T* x, T* y, int64_t* switches) {                              \
        return max_pool2d_entry("fc_max_pool2d_dilated_" #SUF, p, dilation_h, dilation_w, x, y, switches); \
    }                                                                                                   \
    int fc_max_unpool2d_##SUF(const fc_pool_params* p, const T* y, const int64_t* switches, T* out) {   \
        return guarded("fc_max_unpool2d_" #SUF, [&] {                                                   \
            require(p != nullptr, "params is NULL");                                                    \
            require(p->N >= 1 && p->C >= 1 && p->H >= 1 && p->W >= 1 && p->H_out >= 1 && p->W_out >= 1, \
                    "sizes must be >= 1");                                                              \
            require_ptrs({y, switches, out});                                                           \
            const int64_t n_in = p->N * p->C * p->H_out * p->W_out, plane = p->H * p->W;                \
            for (int64_t i = 0; i < n_in; ++i)                                                          \
                require(switches[i] >= 0 && switches[i] < plane,                                        \
                        "switches[" + std::to_string(i) + "] = " + std::to_string(switches[i]) +        \
                            " is outside the output plane of " + std::to_string(plane) + " elements");  \
            const fastconv::UnpoolShape s{p->N * p->C, p->H_out * p->W_out, plane};                     \
            run(kernel<T>().max_unpool2d, s, y, switches, out);                                         \
        });                                                                                             \
    }

#define FC_NORM(SUF, T)                                                                                  \
    int fc_batch_norm2d_##SUF(const fc_norm_params* p, double eps, const T* x, const T* w, const T* b, T* y, \
                              T* mean, T* inv_std) {                                                        \
        return guarded("fc_batch_norm2d_" #SUF, [&] {                                                       \
            const auto s = norm_shape(p, eps);                                                              \
            require_ptrs({x, y, mean, inv_std});                                                            \
            run(kernel<T>().batch_norm2d, s, x, w, b, y, mean, inv_std);                                    \
        });                                                                                                 \
    }                                                                                                       \
    int fc_batch_norm2d_grad_##SUF(const fc_norm_params* p, const T* dy, const T* x, const T* mean,         \
                                   const T* inv_std, const T* w, T* dx, T* dw, T* db) {                     \
        return guarded("fc_batch_norm2d_grad_" #SUF, [&] {                                                  \
            const auto s = norm_shape(p, 0.0);                                                              \
            require_ptrs({dy, x, mean, inv_std, dx, dw, db});                                               \
            run(kernel<T>().batch_norm2d_grad, s, dy, x, mean, inv_std, w, nullptr, dx, dw, db);            \
        });                                                                                                 \
    }

FC_DENSE(f32, float)
FC_DENSE(f64, double)
FC_TILED(tiled_conv2d, false, f32, float)
FC_TILED(tiled_conv2d, false, f64, double)
FC_TILED(unshared_conv2d, true, f32, float)
FC_TILED(unshared_conv2d, true, f64, double)
FC_POOL(f32, float)
FC_POOL(f64, double)
FC_NORM(f32, float)
FC_NORM(f64, double)

}  // extern "C"
