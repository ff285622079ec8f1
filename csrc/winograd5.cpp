// winograd5.cpp — 5x5 stride-1 convolution as four 3x3 pieces run by Winograd: forward, input gradient
// and weight gradient, side by side.
//
// The 5x5 kernel, zero-padded to 6x6, is four 3x3 pieces (a, b) at offsets (3a, 3b); piece (a, b) reads x
// shifted by the same offsets. With the four shifted copies of x stacked as 4·C_in input channels (the
// window of x each piece reads, H_out + 2 rows by W_out + 2 columns, images side by side in mosaic
// planes: winograd_split.h), the 5x5 layer is one 3x3 layer without padding, and the sum over pieces is
// the dense kernel's sum over channels. F(4x4, 3x3) then
// costs 36·4/16 = 9 multiplies per output and input channel where the direct kernels take 25 — as many as
// F(2x2, 5x5), whose 6x6 transforms use the same points — and keeps F(4x4, 3x3)'s error bound (its sum
// runs over 4·C_in·9 terms, of which 11 per channel are zero).
#include "winograd_split.h"

namespace fastconv {

const char* winograd5_why_not(const ConvShape& s) {
    if (s.kH != 5 || s.kW != 5) return "needs a 5x5 kernel";
    if (s.sh != 1 || s.sw != 1) return "needs stride 1";
    if (s.groups != 1) return "needs groups == 1";
    if (s.dil_h != 1 || s.dil_w != 1) return "needs dilation 1";
    return nullptr;
}

namespace {

// x's four shifted windows into X (the input of u = pieces_shape(s)): piece 2a + b as channels
// (2a + b)·C_in ...
template <typename T>
void gather_pieces(const T* x, const ConvShape& s, const ConvShape& u, T* X) {
    const long NC = s.N * s.C_in, Ws = s.W_out + 2;
    const Mosaic mo = input_mosaic(u, Ws);
    zero_empty_cells(X, mo, s.N, u.N, u.H, Ws);
    for_each_grid(4 * NC, 4.0 * NC * u.H * Ws, [&](long j) {
        const long piece = j / NC, p = j % NC;
        const PlaneMap pm{1, 1, 3 * (piece / 2) - s.ph, 3 * (piece % 2) - s.pw};
        gather_grid(x + p * s.HW(), s.H, s.W, pm, X + mo.offset(p / s.C_in, piece * s.C_in + p % s.C_in),
                    mo.row_stride, u.H, Ws);
    });
}

// The outputs of u's planes into y (N, C_out, H_out, W_out).
template <typename T>
void scatter_outputs(const T* Y, const ConvShape& s, const ConvShape& u, T* y) {
    const Mosaic mo = output_mosaic(u, s.W_out + 2);
    for_each_grid(s.N * s.C_out, (double)s.N * s.C_out * s.HW_out(), [&](long p) {
        scatter_grid(Y + mo.offset(p / s.C_out, p % s.C_out), mo.row_stride, s.H_out, s.W_out, y + p * s.HW_out(),
                     s.W_out, PlaneMap{1, 1, 0, 0});
    });
}

// The pieces' kernel W3 (K, 4·C, 3, 3) of w (K, C, 5, 5) — or, `flipped`, of w (C, K, 5, 5) rotated by
// 180° and transposed (the input gradient's kernel).
template <typename T>
void split_kernel(const T* w, long K, long C, bool flipped, T* W3) {
    for (long o = 0; o < K; ++o)
        for (int piece = 0; piece < 4; ++piece)
            for (long c = 0; c < C; ++c)
                for (int r = 0; r < 3; ++r)
                    for (int q = 0; q < 3; ++q) {
                        const int i = 3 * (piece / 2) + r, j = 3 * (piece % 2) + q;
                        T v = 0;
                        if (i < 5 && j < 5) v = flipped ? w[(c * K + o) * 25 + (4 - i) * 5 + 4 - j] : w[(o * C + c) * 25 + i * 5 + j];
                        W3[(((o * 4 + piece) * C + c) * 3 + r) * 3 + q] = v;
                    }
}

template <typename T, int m>
void pieces_forward(const T* x, const T* w, const T* b, T* y, const ConvShape& s, bool flipped) {
    const ConvShape u = pieces_shape(s);
    Buffer<T> X(u.N * u.C_in * u.HW()), W3(u.C_out * u.K()), Y(u.N * u.C_out * u.HW_out());
    gather_pieces(x, s, u, X.data());
    split_kernel(w, s.C_out, s.C_in, flipped, W3.data());
    conv2d_winograd<T, m>(X.data(), W3.data(), b, Y.data(), u);
    scatter_outputs(Y.data(), s, u, y);
}

}  // namespace

template <typename T, int m>
void conv2d_winograd5(const T* x, const T* w, const T* b, T* y, const ConvShape& s) {
    pieces_forward<T, m>(x, w, b, y, s, false);
}

// The input gradient is the 5x5 forward on dy with the rotated, transposed kernel and padding 4 − p (a
// negative one just starts the windows inside dy).
template <typename T, int m>
void conv2d_input_grad_winograd5(const T* dy, const T* w, T* dx, const ConvShape& s) {
    pieces_forward<T, m>(dy, w, nullptr, dx, input_grad_as_forward(s), true);
}

// The pieces' weight gradient, its taps past the 5x5 kernel dropped.
template <typename T, int m>
void conv2d_weight_grad_winograd5(const T* x, const T* dy, T* dw, const ConvShape& s) {
    const ConvShape u = pieces_shape(s);
    const long K = s.C_out, C = s.C_in;
    const Mosaic mo = output_mosaic(u, s.W_out + 2);
    Buffer<T> X(u.N * u.C_in * u.HW()), DY(u.N * K * u.HW_out()), DW3(K * u.K());
    gather_pieces(x, s, u, X.data());
    std::fill(DY.data(), DY.data() + u.N * K * u.HW_out(), T(0));  // the dropped columns and empty cells
    for_each_grid(s.N * K, (double)s.N * K * s.HW_out(), [&](long p) {
        gather_grid(dy + p * s.HW_out(), s.H_out, s.W_out, PlaneMap{1, 1, 0, 0}, DY.data() + mo.offset(p / K, p % K),
                    mo.row_stride, s.H_out, s.W_out);
    });
    conv2d_weight_grad_winograd<T, m>(X.data(), DY.data(), DW3.data(), u);
    for (long o = 0; o < K; ++o)
        for (long c = 0; c < C; ++c)
            for (int i = 0; i < 5; ++i)
                for (int j = 0; j < 5; ++j)
                    dw[(o * C + c) * 25 + i * 5 + j] =
                        DW3.data()[(((o * 4 + 2 * (i / 3) + j / 3) * C + c) * 3 + i % 3) * 3 + j % 3];
}

#define FASTCONV_INSTANTIATE(T, m)                                                             \
    template void conv2d_winograd5<T, m>(const T*, const T*, const T*, T*, const ConvShape&);  \
    template void conv2d_input_grad_winograd5<T, m>(const T*, const T*, T*, const ConvShape&); \
    template void conv2d_weight_grad_winograd5<T, m>(const T*, const T*, T*, const ConvShape&);
FASTCONV_INSTANTIATE(float, 2)
FASTCONV_INSTANTIATE(float, 4)
FASTCONV_INSTANTIATE(double, 2)
FASTCONV_INSTANTIATE(double, 4)
#undef FASTCONV_INSTANTIATE

}  // namespace fastconv
