// winograd_dilated.cpp — dilated 3x3 stride-1 convolution by Winograd: forward, input gradient and
// weight gradient, side by side.
//
// Output phase (q, r) of a layer dilated by (d_h, d_w) holds the outputs (q + d_h·u, r + d_w·v); they read
// only the input sub-image x[q − p_h + d_h·i, r − p_w + d_w·j], as an undilated 3x3 conv. Every phase's
// sub-image is copied (gather_grid) into one batch of N·d_h·d_w images (mosaic planes, winograd_split.h),
// all of the largest phase's size (ceil(H_out / d_h) + 2 rows), the dense kernel runs on that batch once,
// and each phase's outputs go back to their places; the extra outputs of the smaller phases are dropped.
#include "winograd_split.h"

namespace fastconv {

const char* winograd_dilated_why_not(const ConvShape& s) {
    if (s.kH != 3 || s.kW != 3) return "needs a 3x3 kernel";
    if (s.sh != 1 || s.sw != 1) return "needs stride 1";
    if (s.groups != 1) return "needs groups == 1";
    if (s.dil_h == 1 && s.dil_w == 1) return "needs dilation > 1 (undilated layers are winograd_f4x3's)";
    return nullptr;
}

namespace {

// Phase k (q = k / d_w, r = k % d_w) of s: its Hg x Wg outputs, where its input sub-image lies in x's
// planes (in) and where its outputs lie in y's (out).
struct DilatedPhase {
    long Hg, Wg;
    PlaneMap in, out;
    DilatedPhase(const ConvShape& s, long k) {
        const long q = k / s.dil_w, r = k % s.dil_w;
        Hg = std::max(0L, ceil_div(s.H_out - q, s.dil_h)), Wg = std::max(0L, ceil_div(s.W_out - r, s.dil_w));
        in = {s.dil_h, s.dil_w, q - s.ph, r - s.pw};
        out = {s.dil_h, s.dil_w, q, r};
    }
};

// The columns of a phase image (the largest phase's outputs plus 2).
inline long phase_columns(const ConvShape& s) { return ceil_div(s.W_out, s.dil_w) + 2; }

// x's sub-images of every phase into X (the input of u = dilated_phase_shape(s)).
template <typename T>
void gather_phases(const T* x, const ConvShape& s, const ConvShape& u, T* X) {
    const long phases = s.dil_h * s.dil_w, NC = s.N * s.C_in, Ws = phase_columns(s);
    const Mosaic mo = input_mosaic(u, Ws);
    zero_empty_cells(X, mo, s.N * phases, u.N, u.H, Ws);
    for_each_grid(phases * NC, (double)phases * NC * u.H * Ws, [&](long j) {
        const long k = j / NC, p = j % NC;
        gather_grid(x + p * s.HW(), s.H, s.W, DilatedPhase(s, k).in, X + mo.offset(k * s.N + p / s.C_in, p % s.C_in),
                    mo.row_stride, u.H, Ws);
    });
}

// Y's outputs (u's) back into y (s's).
template <typename T>
void scatter_phases(const T* Y, const ConvShape& s, const ConvShape& u, T* y) {
    const long phases = s.dil_h * s.dil_w, NK = s.N * s.C_out;
    const Mosaic mo = output_mosaic(u, phase_columns(s));
    for_each_grid(phases * NK, (double)s.N * s.C_out * s.HW_out(), [&](long j) {
        const long k = j / NK, p = j % NK;
        const DilatedPhase ph(s, k);
        scatter_grid(Y + mo.offset(k * s.N + p / s.C_out, p % s.C_out), mo.row_stride, ph.Hg, ph.Wg,
                     y + p * s.HW_out(), s.W_out, ph.out);
    });
}

}  // namespace

template <typename T, int m>
void conv2d_winograd_dilated(const T* x, const T* w, const T* b, T* y, const ConvShape& s) {
    const ConvShape u = dilated_phase_shape(s);
    Buffer<T> X(u.N * u.C_in * u.HW()), Y(u.N * u.C_out * u.HW_out());
    gather_phases(x, s, u, X.data());
    conv2d_winograd<T, m>(X.data(), w, b, Y.data(), u);
    scatter_phases(Y.data(), s, u, y);
}

// The input gradient is the dilated forward t = input_grad_as_forward(s) on dy with the rotated,
// transposed kernel: split as that forward, run as the dense input gradient whose forward is t's phase
// problem (its outputs padded by 2, so that its forward has no padding).
template <typename T, int m>
void conv2d_input_grad_winograd_dilated(const T* dy, const T* w, T* dx, const ConvShape& s) {
    const ConvShape t = input_grad_as_forward(s), u = dilated_phase_shape(t);
    const ConvShape v{u.N, s.C_in, u.H_out, u.W_out, s.C_out, 3, 3, u.H, u.W, 1, 1, 2, 2, 1, 1, 1};
    Buffer<T> DY(u.N * u.C_in * u.HW()), DX(u.N * u.C_out * u.HW_out());
    gather_phases(dy, t, u, DY.data());
    conv2d_input_grad_winograd<T, m>(DY.data(), w, DX.data(), v);
    scatter_phases(DX.data(), t, u, dx);
}

// dw sums over the phases as over images: the phase images of x, and dy's phases, zero past each
// phase's outputs and in the dropped columns, so that nothing else adds to dw.
template <typename T, int m>
void conv2d_weight_grad_winograd_dilated(const T* x, const T* dy, T* dw, const ConvShape& s) {
    const ConvShape u = dilated_phase_shape(s);
    const long Ws = phase_columns(s);
    const Mosaic mo = output_mosaic(u, Ws);
    Buffer<T> X(u.N * u.C_in * u.HW()), DY(u.N * u.C_out * u.HW_out());
    gather_phases(x, s, u, X.data());
    std::fill(DY.data(), DY.data() + u.N * u.C_out * u.HW_out(), T(0));
    const long NK = s.N * s.C_out;
    for_each_grid(s.dil_h * s.dil_w * NK, (double)u.N * u.C_out * u.HW_out(), [&](long j) {
        const long k = j / NK, p = j % NK;
        gather_grid(dy + p * s.HW_out(), s.H_out, s.W_out, DilatedPhase(s, k).out,
                    DY.data() + mo.offset(k * s.N + p / s.C_out, p % s.C_out), mo.row_stride, u.H_out, Ws - 2);
    });
    conv2d_weight_grad_winograd<T, m>(X.data(), DY.data(), dw, u);
}

#define FASTCONV_INSTANTIATE(T, m)                                                                    \
    template void conv2d_winograd_dilated<T, m>(const T*, const T*, const T*, T*, const ConvShape&);  \
    template void conv2d_input_grad_winograd_dilated<T, m>(const T*, const T*, T*, const ConvShape&); \
    template void conv2d_weight_grad_winograd_dilated<T, m>(const T*, const T*, T*, const ConvShape&);
FASTCONV_INSTANTIATE(float, 2)
FASTCONV_INSTANTIATE(float, 4)
FASTCONV_INSTANTIATE(double, 2)
FASTCONV_INSTANTIATE(double, 4)
#undef FASTCONV_INSTANTIATE

}  // namespace fastconv
