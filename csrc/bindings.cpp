// bindings.cpp — the pybind11 module fastconv._cpp: array in -> raw pointers -> GIL released -> kernel.
//
// No loops, no math, no user-facing validation (that is fastconv/_validate.py). What is here is a
// safety net so the C++ can never be pointed out of bounds: every array must already have the
// right dtype, be C-contiguous (outputs also writeable — never a silent copy), and agree in shape.
// Sizes come from the arrays themselves; one entry point per op, dispatching on dtype.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <initializer_list>
#include <sstream>
#include <string>
#include <utility>

#include "dispatch.h"

namespace py = pybind11;
using fastconv::ConvShape;
using fastconv::PoolShape;
using Pair = std::pair<long, long>;
namespace dispatch = fastconv::dispatch;

namespace {

[[noreturn]] void fail(const std::string& what) { throw std::invalid_argument(what); }

void need(bool ok, const char* op, const char* what) {
    if (!ok) fail(std::string(op) + ": " + what);
}

template <typename T>
const T* in(const py::array& a, const char* name) {
    need(py::dtype::of<T>().equal(a.dtype()), name, "dtype differs from the first array's");
    need(a.flags() & py::array::c_style, name, "must be C-contiguous");
    return static_cast<const T*>(a.data());
}

template <typename T>
T* out(py::array& a, const char* name) {
    in<T>(a, name);
    need(a.writeable(), name, "must be writeable");
    return static_cast<T*>(a.mutable_data());
}

// Returns f(T{}) for the array's float dtype.
template <typename F>
auto by_dtype(const py::array& a, F&& f) {
    if (py::dtype::of<float>().equal(a.dtype())) return f(float{});
    if (py::dtype::of<double>().equal(a.dtype())) return f(double{});
    fail("expected float32 or float64 arrays, got " + std::string(py::str(a.dtype())));
}

// Ctrl-C during a long kernel: the kernels poll (Stop in parallel.h) from the calling thread, which
// for a call from Python's main thread (the only one that runs signal handlers) briefly takes the GIL
// and runs them. A handler that raises stops the kernel; the exception stays set on this thread and is
// raised once the kernel has returned. Calls from other threads, and from the C ABI, never poll.
struct SignalPolling {
    bool interrupted = false;
    SignalPolling* outer;  // a signal handler may itself call a kernel
    SignalPolling();
    ~SignalPolling();
};
thread_local SignalPolling* t_polling = nullptr;
unsigned long g_main_thread = 0;

SignalPolling::SignalPolling() : outer(t_polling) {
    if (PyThread_get_thread_ident() == g_main_thread) t_polling = this;
}
SignalPolling::~SignalPolling() { t_polling = outer; }

bool poll_signals() {
    SignalPolling* p = t_polling;
    if (!p) return false;
    if (!p->interrupted) {
        py::gil_scoped_acquire gil;
        p->interrupted = PyErr_CheckSignals() != 0;
    }
    return p->interrupted;
}

// The dense conv ops take, after their sizes, `algorithm` ("auto" or one to keep to, ImplList::select).
// Every op takes, after its arrays and sizes, `kernel` (an implementation name to force, "" for the
// registry's choice) and `dry_run` (only name the implementation that would run: fastconv.kernel_for).
// Runs `call` with the GIL released, or returns the implementation's name.
template <typename Impl, typename F>
py::object run_or_name(const Impl& impl, bool dry_run, F&& call) {
    if (dry_run) return py::str(impl.name);
    SignalPolling polling;
    {
        py::gil_scoped_release release;
        call();
    }
    if (polling.interrupted) throw py::error_already_set();
    return py::none();
}

// x (N, C_in, H, W), w (C_out, C_in/groups, kH, kW), y (N, C_out, H_out, W_out) must agree.
ConvShape conv_shape(const py::array& x, const py::array& w, const py::array& y, Pair st, Pair pad, Pair dil,
                     long groups) {
    need(x.ndim() == 4 && w.ndim() == 4 && y.ndim() == 4, "conv2d", "arrays must be 4-D");
    ConvShape s{x.shape(0), x.shape(1), x.shape(2), x.shape(3), w.shape(0), w.shape(2), w.shape(3),
                y.shape(2), y.shape(3), st.first, st.second, pad.first, pad.second, dil.first, dil.second, groups};
    fastconv::check_conv_shape(s);
    need(y.shape(0) == s.N && y.shape(1) == s.C_out, "conv2d", "output (N, C_out) differs from input/weight");
    need(w.shape(1) * groups == s.C_in, "conv2d", "weight.shape[1] * groups != C_in");
    return s;
}

py::object conv2d(py::array x, py::array w, py::object b, py::array y, Pair st, Pair pad, Pair dil, long groups,
                  const std::string& algorithm, const std::string& kernel, bool dry_run) {
    ConvShape s = conv_shape(x, w, y, st, pad, dil, groups);
    py::array bias = b.is_none() ? py::array() : py::array(b);
    if (!b.is_none()) need(bias.ndim() == 1 && bias.shape(0) == s.C_out, "conv2d", "bias must be (C_out,)");
    return by_dtype(x, [&](auto tag) {
        using T = decltype(tag);
        const auto& impl = dispatch::kernels().ops<T>().conv2d.select(s, kernel.c_str(), algorithm.c_str());
        const T *xp = in<T>(x, "x"), *wp = in<T>(w, "w"), *bp = b.is_none() ? nullptr : in<T>(bias, "b");
        T* yp = out<T>(y, "y");
        return run_or_name(impl, dry_run, [&] { impl.run(xp, wp, bp, yp, s); });
    });
}

py::object conv2d_input_grad(py::array dy, py::array w, py::array dx, Pair st, Pair pad, Pair dil, long groups,
                             const std::string& algorithm, const std::string& kernel, bool dry_run) {
    ConvShape s = conv_shape(dx, w, dy, st, pad, dil, groups);
    return by_dtype(dy, [&](auto tag) {
        using T = decltype(tag);
        const auto& impl = dispatch::kernels().ops<T>().conv2d_input_grad.select(s, kernel.c_str(), algorithm.c_str());
        const T *dyp = in<T>(dy, "dy"), *wp = in<T>(w, "w");
        T* dxp = out<T>(dx, "dx");
        return run_or_name(impl, dry_run, [&] { impl.run(dyp, wp, dxp, s); });
    });
}

py::object conv2d_weight_grad(py::array x, py::array dy, py::array dw, Pair st, Pair pad, Pair dil, long groups,
                              const std::string& algorithm, const std::string& kernel, bool dry_run) {
    ConvShape s = conv_shape(x, dw, dy, st, pad, dil, groups);
    return by_dtype(x, [&](auto tag) {
        using T = decltype(tag);
        const auto& impl = dispatch::kernels().ops<T>().conv2d_weight_grad.select(s, kernel.c_str(), algorithm.c_str());
        const T *xp = in<T>(x, "x"), *dyp = in<T>(dy, "dy");
        T* dwp = out<T>(dw, "dw");
        return run_or_name(impl, dry_run, [&] { impl.run(xp, dyp, dwp, s); });
    });
}

py::object max_pool2d(py::array x, py::array y, py::array switches, Pair k, Pair st, Pair pad, Pair dil,
                      const std::string& kernel, bool dry_run) {
    need(x.ndim() == 4 && y.ndim() == 4, "max_pool2d", "x and y must be 4-D");
    PoolShape s{x.shape(0), x.shape(1), x.shape(2), x.shape(3), y.shape(2), y.shape(3),
                k.first, k.second, st.first, st.second, pad.first, pad.second, dil.first, dil.second};
    fastconv::check_pool_shape(s);
    need(y.shape(0) == s.N && y.shape(1) == s.C, "max_pool2d", "y (N, C) differs from x");
    need(switches.ndim() == 4 && std::equal(y.shape(), y.shape() + 4, switches.shape()), "max_pool2d",
         "switches must have y's shape");
    return by_dtype(x, [&](auto tag) {
        using T = decltype(tag);
        const auto& impl = dispatch::kernels().ops<T>().max_pool2d.select(s, kernel.c_str());
        const T* xp = in<T>(x, "x");
        T* yp = out<T>(y, "y");
        int64_t* sp = out<int64_t>(switches, "switches");
        return run_or_name(impl, dry_run, [&] { impl.run(xp, yp, sp, s); });
    });
}

// Returns how many switches lie outside a plane (skipped), or with dry_run the implementation's name.
py::object max_unpool2d(py::array y, py::array switches, py::array o, const std::string& kernel, bool dry_run) {
    need(y.ndim() == 4 && o.ndim() == 4, "max_unpool2d", "y and out must be 4-D");
    need(o.shape(0) == y.shape(0) && o.shape(1) == y.shape(1), "max_unpool2d", "out (N, C) differs from y");
    need(switches.ndim() == 4 && std::equal(y.shape(), y.shape() + 4, switches.shape()), "max_unpool2d",
         "switches must have y's shape");
    const fastconv::UnpoolShape s{y.shape(0) * y.shape(1), y.shape(2) * y.shape(3), o.shape(2) * o.shape(3)};
    return by_dtype(y, [&](auto tag) -> py::object {
        using T = decltype(tag);
        const auto& impl = dispatch::kernels().ops<T>().max_unpool2d.select(s, kernel.c_str());
        const T* yp = in<T>(y, "y");
        const int64_t* sp = in<int64_t>(switches, "switches");
        T* op = out<T>(o, "out");
        long skipped = 0;
        py::object name = run_or_name(impl, dry_run, [&] { skipped = impl.run(yp, sp, op, s); });
        return dry_run ? name : py::int_(skipped);
    });
}

bool channel_values(std::initializer_list<const py::array*> arrays, long C) {
    return std::all_of(arrays.begin(), arrays.end(),
                       [C](const py::array* a) { return a->ndim() == 1 && a->size() == C; });
}

// x (N, C, H, W) -> y of x's shape, mean and inv_std (C,); w, b (C,) or None.
py::object batch_norm2d(py::array x, py::object w, py::object b, py::array y, py::array mean, py::array inv_std,
                        double eps, bool relu, const std::string& kernel, bool dry_run) {
    need(x.ndim() == 4 && y.ndim() == 4 && std::equal(x.shape(), x.shape() + 4, y.shape()), "batch_norm2d",
         "x and y must be 4-D, of one shape");
    const fastconv::NormShape s{x.shape(0), x.shape(1), x.shape(2) * x.shape(3), eps, relu};
    fastconv::check_norm_shape(s);
    const py::array wa = w.is_none() ? py::array() : py::array(w), ba = b.is_none() ? py::array() : py::array(b);
    need(channel_values({&mean, &inv_std}, s.C) && (w.is_none() || wa.size() == s.C) && (b.is_none() || ba.size() == s.C),
         "batch_norm2d", "w, b, mean and inv_std must have C values");
    return by_dtype(x, [&](auto tag) {
        using T = decltype(tag);
        const auto& impl = dispatch::kernels().ops<T>().batch_norm2d.select(s, kernel.c_str());
        const T *xp = in<T>(x, "x"), *wp = w.is_none() ? nullptr : in<T>(wa, "w"),
                *bp = b.is_none() ? nullptr : in<T>(ba, "b");
        T *yp = out<T>(y, "y"), *mp = out<T>(mean, "mean"), *ip = out<T>(inv_std, "inv_std");
        return run_or_name(impl, dry_run, [&] { impl.run(xp, wp, bp, yp, mp, ip, s); });
    });
}

// dy, x, dx (N, C, H, W); mean, inv_std, dw, db (C,); w, b (C,) or None.
py::object batch_norm2d_grad(py::array dy, py::array x, py::array mean, py::array inv_std, py::object w,
                             py::object b, py::array dx, py::array dw, py::array db, bool relu,
                             const std::string& kernel, bool dry_run) {
    need(x.ndim() == 4 && std::equal(x.shape(), x.shape() + 4, dy.shape()) && dy.ndim() == 4 && dx.ndim() == 4 &&
             std::equal(x.shape(), x.shape() + 4, dx.shape()),
         "batch_norm2d_grad", "dy, x and dx must be 4-D, of one shape");
    const fastconv::NormShape s{x.shape(0), x.shape(1), x.shape(2) * x.shape(3), 0.0, relu};
    fastconv::check_norm_shape(s);
    const py::array wa = w.is_none() ? py::array() : py::array(w), ba = b.is_none() ? py::array() : py::array(b);
    need(channel_values({&mean, &inv_std, &dw, &db}, s.C) && (w.is_none() || wa.size() == s.C) &&
             (b.is_none() || ba.size() == s.C),
         "batch_norm2d_grad", "w, b, mean, inv_std, dw and db must have C values");
    return by_dtype(x, [&](auto tag) {
        using T = decltype(tag);
        const auto& impl = dispatch::kernels().ops<T>().batch_norm2d_grad.select(s, kernel.c_str());
        const T *dyp = in<T>(dy, "dy"), *xp = in<T>(x, "x"), *mp = in<T>(mean, "mean"),
                *ip = in<T>(inv_std, "inv_std"), *wp = w.is_none() ? nullptr : in<T>(wa, "w"),
                *bp = b.is_none() ? nullptr : in<T>(ba, "b");
        T *dxp = out<T>(dx, "dx"), *dwp = out<T>(dw, "dw"), *dbp = out<T>(db, "db");
        return run_or_name(impl, dry_run, [&] { impl.run(dyp, xp, mp, ip, wp, bp, dxp, dwp, dbp, s); });
    });
}

// x (N, C_in, H, W), w (T_h, T_w, C_out, C_in, kH, kW), y (N, C_out, H_out, W_out) must agree.
fastconv::TiledShape tiled_shape(const py::array& x, const py::array& w, const py::array& y, Pair st, Pair pad,
                                 bool unshared) {
    need(x.ndim() == 4 && w.ndim() == 6 && y.ndim() == 4, "tiled/unshared conv", "x, y must be 4-D and w 6-D");
    fastconv::TiledShape s{x.shape(0), x.shape(1), x.shape(2), x.shape(3), w.shape(2), w.shape(4), w.shape(5),
                           y.shape(2), y.shape(3), st.first, st.second, pad.first, pad.second, w.shape(0), w.shape(1),
                           1, 0, 0};
    fastconv::check_tiled_shape(s);
    need(w.shape(3) == s.C_in && y.shape(0) == s.N && y.shape(1) == s.C_out, "tiled/unshared conv",
         "channel or batch sizes of x, w, y disagree");
    if (unshared) {
        need(s.T_h == s.H_out && s.T_w == s.W_out, "unshared conv", "weight grid must equal the output size");
        s = fastconv::unshared_shape(s);
    }
    return s;
}

// The tiled or unshared op's implementation list of one dtype.
template <typename T, bool Unshared>
const auto& tiled_list(const fastconv::KernelOps<T>& k, int which) {
    if constexpr (Unshared)
        return which == 0 ? k.unshared_conv2d_input_grad : k.unshared_conv2d_weight_grad;
    else
        return which == 0 ? k.tiled_conv2d_input_grad : k.tiled_conv2d_weight_grad;
}

template <bool Unshared>
py::object tiled_forward(py::array x, py::array w, py::object b, py::array y, Pair st, Pair pad,
                         const std::string& kernel, bool dry_run) {
    auto s = tiled_shape(x, w, y, st, pad, Unshared);
    py::array bias = b.is_none() ? py::array() : py::array(b);
    if (!b.is_none())
        need(bias.size() == (Unshared ? s.C_out * s.H_out * s.W_out : s.C_out), "tiled/unshared conv", "bias size");
    return by_dtype(x, [&](auto tag) {
        using T = decltype(tag);
        const auto& ops = dispatch::kernels().ops<T>();
        const auto& impl = (Unshared ? ops.unshared_conv2d : ops.tiled_conv2d).select(s, kernel.c_str());
        const T *xp = in<T>(x, "x"), *wp = in<T>(w, "w"), *bp = b.is_none() ? nullptr : in<T>(bias, "b");
        T* yp = out<T>(y, "y");
        return run_or_name(impl, dry_run, [&] { impl.run(xp, wp, bp, yp, s); });
    });
}

template <bool Unshared>
py::object tiled_input_grad(py::array dy, py::array w, py::array dx, Pair st, Pair pad, const std::string& kernel,
                            bool dry_run) {
    auto s = tiled_shape(dx, w, dy, st, pad, Unshared);
    return by_dtype(dy, [&](auto tag) {
        using T = decltype(tag);
        const auto& impl = tiled_list<T, Unshared>(dispatch::kernels().ops<T>(), 0).select(s, kernel.c_str());
        const T *dyp = in<T>(dy, "dy"), *wp = in<T>(w, "w");
        T* dxp = out<T>(dx, "dx");
        return run_or_name(impl, dry_run, [&] { impl.run(dyp, wp, dxp, s); });
    });
}

template <bool Unshared>
py::object tiled_weight_grad(py::array x, py::array dy, py::array dw, Pair st, Pair pad, const std::string& kernel,
                             bool dry_run) {
    auto s = tiled_shape(x, dw, dy, st, pad, Unshared);
    return by_dtype(x, [&](auto tag) {
        using T = decltype(tag);
        const auto& impl = tiled_list<T, Unshared>(dispatch::kernels().ops<T>(), 1).select(s, kernel.c_str());
        const T *xp = in<T>(x, "x"), *dyp = in<T>(dy, "dy");
        T* dwp = out<T>(dw, "dw");
        return run_or_name(impl, dry_run, [&] { impl.run(xp, dyp, dwp, s); });
    });
}

// {op: [implementation names, best first]} of the registry.
py::dict implementations() {
    const auto& k = dispatch::kernels().ops<float>();
    py::dict d;
    auto add = [&](const char* op, const auto& list) {
        py::list names;
        for (int i = 0; i < list.count; ++i) names.append(list.impls[i].name);
        d[op] = names;
    };
    add("conv2d", k.conv2d);
    add("conv2d_input_grad", k.conv2d_input_grad);
    add("conv2d_weight_grad", k.conv2d_weight_grad);
    add("tiled_conv2d", k.tiled_conv2d);
    add("tiled_conv2d_input_grad", k.tiled_conv2d_input_grad);
    add("tiled_conv2d_weight_grad", k.tiled_conv2d_weight_grad);
    add("unshared_conv2d", k.unshared_conv2d);
    add("unshared_conv2d_input_grad", k.unshared_conv2d_input_grad);
    add("unshared_conv2d_weight_grad", k.unshared_conv2d_weight_grad);
    add("max_pool2d", k.max_pool2d);
    add("max_unpool2d", k.max_unpool2d);
    add("batch_norm2d", k.batch_norm2d);
    add("batch_norm2d_grad", k.batch_norm2d_grad);
    return d;
}

// {implementation name: (algorithm, tile)} of the registry ("" for no tile).
py::dict algorithms() {
    const auto& k = dispatch::kernels().ops<float>();
    py::dict d;
    auto add = [&](const auto& list) {
        for (int i = 0; i < list.count; ++i) d[list.impls[i].name] = py::make_tuple(list.impls[i].algorithm, list.impls[i].tile);
    };
    add(k.conv2d);
    add(k.conv2d_input_grad);
    add(k.conv2d_weight_grad);
    return d;
}

std::string build_info() {
    const auto& k = dispatch::kernels();
    std::ostringstream s;
    s << "isa=" << k.isa << " (" << k.vector_bytes << "-byte vectors; this cpu runs";
    for (const auto& l : dispatch::supported_isas()) s << " " << l;
    s << "), gemm tile " << k.tile_f32[0] << "x" << k.tile_f32[1] << " f32 / " << k.tile_f64[0] << "x"
      << k.tile_f64[1] << " f64, openmp threads=" << k.get_num_threads();
#if defined(__clang__)
    s << ", compiler=clang " << __clang_major__ << "." << __clang_minor__;
#elif defined(__GNUC__)
    s << ", compiler=gcc " << __GNUC__ << "." << __GNUC_MINOR__;
#endif
    return s.str();
}

}  // namespace

PYBIND11_MODULE(_cpp, m) {
    m.doc() = "fastconv C++ kernels (csrc/); called through fastconv.backends.cpp";
    dispatch::kernels();  // choose and load the ISA level now: a failure fails the import
    g_main_thread = py::module_::import("threading").attr("main_thread")().attr("ident").cast<unsigned long>();
    dispatch::set_poll(poll_signals);
    m.def("conv2d", &conv2d, "y = x ⋆ w + b into the preallocated y");
    m.def("conv2d_input_grad", &conv2d_input_grad, "dx = adjoint of conv2d in x, into dx");
    m.def("conv2d_weight_grad", &conv2d_weight_grad, "dw = Σ dy ⋆ x, into dw");
    m.def("max_pool2d", &max_pool2d, "window max into y, flat argmax h*W+w into switches");
    m.def("max_unpool2d", &max_unpool2d,
          "out = 0, then out[n,c].flat[switches] += y; returns how many switches lie outside a plane (skipped)");
    m.def("batch_norm2d", &batch_norm2d,
          "y = (x - mean) * inv_std * w + b (then max(y, 0) with relu), the batch's mean and inv_std, into y, mean, inv_std");
    m.def("batch_norm2d_grad", &batch_norm2d_grad, "dx, dw, db of batch_norm2d with the batch's statistics (and relu)");
    m.def("tiled_conv2d", &tiled_forward<false>, "tiled conv into y (kernel w[i % T_h, j % T_w] at (i, j))");
    m.def("tiled_conv2d_input_grad", &tiled_input_grad<false>, "adjoint of tiled_conv2d in x, into dx");
    m.def("tiled_conv2d_weight_grad", &tiled_weight_grad<false>, "tiled_conv2d weight gradient, into dw");
    m.def("unshared_conv2d", &tiled_forward<true>, "locally connected conv into y (one kernel per position)");
    m.def("unshared_conv2d_input_grad", &tiled_input_grad<true>, "adjoint of unshared_conv2d in x, into dx");
    m.def("unshared_conv2d_weight_grad", &tiled_weight_grad<true>, "unshared_conv2d weight gradient, into dw");
    m.def("implementations", &implementations, "{op: [implementation names, best first]}");
    m.def("algorithms", &algorithms, "{dense conv implementation name: (algorithm, tile)}");
    m.def("set_num_threads", &dispatch::set_num_threads, "bound the OpenMP threads of every kernel");
    m.def("get_num_threads", &dispatch::get_num_threads);
    m.def("isa", [] { return std::string(dispatch::kernels().isa); }, "ISA level of the kernels that run");
    m.def("isa_levels", &dispatch::isa_levels, "ISA levels of this build, lowest first");
    m.def("supported_isas", &dispatch::supported_isas, "ISA levels this CPU runs, lowest first");
    m.def("_use_isa", &dispatch::use_isa, "make the kernels of another level this CPU runs active (tests)");
    m.def("_use_library", &dispatch::use_library, "make the kernels of the library at this path active (bench)");
    m.def("build_info", &build_info, "SIMD level, GEMM tile, threads and compiler of this build");
}
