// implicit_conv.cpp — dense convolution by implicit GEMM: forward, stride-1 input gradient, weight gradient.
//
// Forward, per task (image n, group g, block of output rows): the group's input planes are copied once
// into the padded, phase-split layout of implicit.h (a private buffer that stays in L2), then every
// MR x (NV vectors) tile of the output is one register-blocked K loop: MR packed weights broadcast
// against NV input vectors loaded at off[k] from the copy. Against the packed-B path of conv2d.cpp
// this drops the im2col packing, which costs as much as the arithmetic when K is a few hundred.
// The weight gradient reads the im2col rows from such copies in place too (see weight_grad_gemm).
#include <algorithm>
#include <cstring>
#include <vector>

#include "gemm.h"
#include "implicit.h"

namespace fastconv {

template <typename T>
void conv2d_implicit(const T* x, const T* w, const T* bias, T* y, const ConvShape& s) {
    constexpr int MR = GemmBlock<T>::MR, NV = GemmBlock<T>::NV, L = Vec<T>::lanes;
    const long G = s.groups, M = s.M_g(), K = s.K(), HWo = s.HW_out(), Mpad = round_up(M, MR);
    // K in equal blocks of at most FASTCONV_IMPLICIT_KC, ordered k = (a, c, b) so that the kernel rows
    // a tile's output rows reach inside x are one range of k: taps that only read padding are skipped,
    // not multiplied by zero.
    const long KC = ceil_div(K, ceil_div(K, (long)FASTCONV_IMPLICIT_KC)), ap = packed_a_size<T>(M, K);
    const long C_g = s.C_g(), kk = s.kH * s.kW;
    Buffer<T> Ap(G * ap), wr(M * K);
    for (long g = 0; g < G; ++g) {
        for (long m = 0; m < M; ++m)
            for (long c = 0; c < C_g; ++c)
                for (long a = 0; a < s.kH; ++a)
                    std::copy_n(w + ((g * M + m) * C_g + c) * kk + a * s.kW, s.kW,
                                wr.data() + m * K + (a * C_g + c) * s.kW);
        pack_a(M, K, wr.data(), K, 1, Ap.data() + g * ap, KC);
    }
    const bool flat = implicit_flat<T>(s) || !implicit_rows_ok<T>(s);
    const long rows = implicit_rows<T>(s, flat);
    const ImplicitGeometry geo = implicit_geometry<T>(s, rows, flat);
    Buffer<long> off(K);
    implicit_offsets(s, geo, off.data(), true);
    // k range [klo, khi) of the taps that output rows [r0, r1] (absolute) read inside x; all of K if none
    // does (the outputs are then zero either way).
    auto taps = [&](long r0, long r1, long& klo, long& khi) {
        long lo0, hi0, lo1, hi1;
        valid_range(r0 * s.sh - s.ph, s.dil_h, s.kH, s.H, lo0, hi0);
        valid_range(r1 * s.sh - s.ph, s.dil_h, s.kH, s.H, lo1, hi1);
        klo = lo1 * C_g * s.kW;
        khi = hi0 * C_g * s.kW;
        if (klo >= khi) klo = 0, khi = K;
    };
    implicit_row_tasks(x, s, geo, rows, [&](long n, long g, long i0, long nrows, const T* xs) {
        T* yg = y + (n * s.C_out + g * M) * HWo;
        const T* Ag = Ap.data() + g * ap;
        const long nvec = flat ? ceil_div(nrows * geo.Wq, L) : nrows * geo.Wv;
        for (long pc = 0; pc < K; pc += KC) {
            const long kc = std::min(KC, K - pc);
            for (long v0 = 0; v0 < nvec; v0 += NV) {
                const T* base[NV];
                OutSeg<T> seg[NV][2];
                for (int j = 0; j < NV; ++j) {
                    const long v = std::min(v0 + j, nvec - 1);
                    seg[j][0] = seg[j][1] = OutSeg<T>{yg, 0, 0};
                    if (!flat) {
                        const long r = v / geo.Wv, col = v % geo.Wv * L;
                        base[j] = xs + r * geo.Wq + col;
                        if (v0 + j < nvec) seg[j][0] = {yg + (i0 + r) * s.W_out + col, 0, std::min<long>(L, s.W_out - col)};
                        continue;
                    }
                    // Flat: lanes [0, Wq - col) finish row r, the rest start row r + 1.
                    const long f = v * L, r = f / geo.Wq, col = f % geo.Wq, next = geo.Wq - col;
                    base[j] = xs + f;
                    if (v0 + j >= nvec) continue;
                    if (r < nrows && col < s.W_out)
                        seg[j][0] = {yg + (i0 + r) * s.W_out + col, 0, std::min<long>(L, s.W_out - col)};
                    if (next < L && r + 1 < nrows)
                        seg[j][1] = {yg + (i0 + r + 1) * s.W_out, next, std::min<long>(L - next, s.W_out)};
                }
                // Output rows of this tile (task-relative), then the taps they need from this K block.
                const long vl = std::min(v0 + NV, nvec) - 1;
                const long rlo = flat ? v0 * L / geo.Wq : v0 / geo.Wv;
                const long rhi = std::min(nrows - 1, flat ? (vl * L + L - 1) / geo.Wq : vl / geo.Wv);
                long klo, khi;
                taps(i0 + rlo, i0 + rhi, klo, khi);
                const long k0 = std::max(pc, klo), k1 = std::min(pc + kc, khi);
                if (k0 >= k1) continue;
                // The first K block that holds taps of the tile initialises it; later ones accumulate.
                const bool accumulate = pc > klo / KC * KC;
                for (long i = 0; i < M; i += MR) {
                    OutSeg<T> si[NV][2];
                    for (int j = 0; j < NV; ++j)
                        for (int q = 0; q < 2; ++q) si[j][q] = {seg[j][q].c + i * HWo, seg[j][q].lane, seg[j][q].n};
                    implicit_micro<T, MR, NV, 1>(k1 - k0, Ag + pc * Mpad + i * kc + (k0 - pc) * MR, off.data() + k0,
                                                 base, si, HWo, std::min<long>(MR, M - i), accumulate);
                }
            }
        }
        if (bias)
            for (long i = 0; i < M; ++i) {
                T* yr = yg + i * HWo + i0 * s.W_out;
                const T bi = bias[g * M + i];
                for (long j = 0; j < nrows * s.W_out; ++j) yr[j] += bi;
            }
    });
}

template <typename T>
void conv2d_input_grad_implicit(const T* dy, const T* w, T* dx, const ConvShape& s) {
    const long G = s.groups, M = s.M_g(), C_g = s.C_g(), kk = s.kH * s.kW;
    Buffer<T> wt(s.C_in * M * kk);
    for (long g = 0; g < G; ++g)
        for (long c = 0; c < C_g; ++c)
            for (long m = 0; m < M; ++m) {
                const T* src = w + ((g * M + m) * C_g + c) * kk;
                T* dst = wt.data() + ((g * C_g + c) * M + m) * kk;
                for (long e = 0; e < kk; ++e) dst[e] = src[kk - 1 - e];
            }
    conv2d_implicit(dy, wt.data(), (const T*)nullptr, dx, input_grad_as_forward(s));
}

namespace {

// c[i*ldc + 0..nr) (i < mr) += Σ_p row[i][pos[p]] · b[p*NR + 0..NR): MR im2col rows read in place
// against a packed dyᵀ sliver.
template <typename T, int NV>
inline void implicit_wgrad_micro(long kc, const T* const* row, const long* __restrict pos, const T* __restrict b,
                                 T* c, long ldc, long mr, long nr) {
    using V = typename Vec<T>::type;
    constexpr int MR = GemmBlock<T>::MR, L = Vec<T>::lanes, NR = NV * L;
    V acc[MR][NV];
    zero_tile(acc);
    const T* r[MR];
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i) r[i] = row[i];
    for (long p = 0; p < kc; ++p) {
        const long q = pos[p];
        V bv[NV];
#pragma GCC unroll 8
        for (int j = 0; j < NV; ++j) bv[j] = load<V>(b + j * L);
#pragma GCC unroll 32
        for (int i = 0; i < MR; ++i) {
            const V ai = broadcast<V>(r[i][q]);
#pragma GCC unroll 8
            for (int j = 0; j < NV; ++j) acc[i][j] += ai * bv[j];
        }
        b += NR;
    }
    // Rows by compile-time index (i < mr tested inside): a runtime-bounded loop would index acc
    // dynamically and so keep the whole tile in memory.
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i) {
        if (i >= mr) break;
        if (nr == NR) {
#pragma GCC unroll 8
            for (int j = 0; j < NV; ++j) store(c + i * ldc + j * L, load<V>(c + i * ldc + j * L) + acc[i][j]);
            continue;
        }
        alignas(64) T tmp[NR];
#pragma GCC unroll 8
        for (int j = 0; j < NV; ++j) store(tmp + j * L, acc[i][j]);
        for (long j = 0; j < nr; ++j) c[i * ldc + j] += tmp[j];
    }
}

// For each problem: dw (M x K) (+)= Σ_p dy[m, p] · col[k, p] over the positions p of its nseg segments
// of len positions (ImplicitWgrad in implicit.h). As a GEMM dwᵀ[k, m]: MR im2col rows read in place
// times packed NR-column slivers of dyᵀ, over items of (segment, KC positions). Tasks are (problem,
// position slice, block of k rows), all in one parallel region; each sums its slice's items in order
// into a private dwᵀ partial, and the S slices (fixed by the problem) are added in slice order, so dw
// is bit-identical for any thread count.
// Items are 4 x GemmBlock::KC positions long, not KC: each item sets up every k tile once and adds its tile into
// C, and with few k rows (a first layer's) that per-item work would otherwise take a large share of the time.
template <typename T, int NV>
void weight_grad_gemm(const ImplicitWgrad<T>* pr, long nprob, const WgradRows& rows, long K, long M) {
    constexpr long MR = GemmBlock<T>::MR, NR = NV * Vec<T>::lanes;
    long KC = 1;  // positions per item: 4 x GemmBlock::KC, or the longest segment
    for (long q = 0; q < nprob; ++q) KC = std::max(KC, std::min(4 * GemmBlock<T>::KC, pr[q].len));
    const long Mpad = round_up(M, NR), nks = ceil_div(K, MR), psize = K * Mpad;
    long S = 4;  // slices per problem: the same for all, at most the smallest item count
    for (long q = 0; q < nprob; ++q) S = std::min(S, std::max(1L, pr[q].nseg * ceil_div(pr[q].len, KC)));
    const long parts = std::clamp(ceil_div(2L * get_num_threads(), S * nprob), 1L, nks), ntasks = nprob * S * parts;
    double flops = 0;
    for (long q = 0; q < nprob; ++q) flops += 2.0 * M * K * pr[q].nseg * pr[q].len;
    const int nt = threads_for(ntasks, flops);
    Buffer<T> partial(nprob * S * psize), Bp_all(nt * KC * Mpad);
    Stop stop;
#pragma omp parallel num_threads(nt)
    {
#pragma omp for schedule(dynamic)
        for (long t = 0; t < ntasks; ++t) {
            T* Bp = Bp_all.data() + omp_thread() * KC * Mpad;
            const ImplicitWgrad<T>& P = pr[t / (S * parts)];
            const long sl = t / parts % S, kp = t % parts, nblk = ceil_div(P.len, KC), items = P.nseg * nblk;
            const long k0 = nks * kp / parts * MR, k1 = std::min(K, nks * (kp + 1) / parts * MR);
            if (k0 >= k1) continue;
            T* C = partial.data() + t / parts * psize;
            std::fill(C + k0 * Mpad, C + k1 * Mpad, T(0));
            for (long it = items * sl / S; it < items * (sl + 1) / S && !stop(); ++it) {
                const long q = it / nblk, j0 = it % nblk * KC, kc = std::min(KC, P.len - j0);
                const T* xq = P.xs + q * P.xs_stride;
                pack_b_transposed<T, NR>(kc, M, P.dy + q * P.dy_stride + j0, P.ld, Bp);  // dyᵀ
                for (long k = k0; k < k1; k += MR) {
                    const long mr = std::min(MR, k1 - k);
                    long plo = j0, phi = j0 + kc;  // the positions of this item that the tile's rows need
                    if (rows.lo) {
                        plo = *std::min_element(rows.lo + k, rows.lo + k + mr);
                        phi = *std::max_element(rows.hi + k, rows.hi + k + mr);
                        plo = std::max(plo, j0), phi = std::min(phi, j0 + kc);
                        if (plo >= phi) continue;
                    }
                    const T* row[MR];
                    for (long i = 0; i < MR; ++i) row[i] = xq + rows.off[k + std::min(i, mr - 1)];
                    for (long m = 0; m < M; m += NR)
                        implicit_wgrad_micro<T, NV>(phi - plo, row, P.pos + plo, Bp + m * kc + (plo - j0) * NR,
                                                    C + k * Mpad + m, Mpad, mr, std::min(NR, M - m));
                }
            }
        }
#pragma omp for schedule(static)
        for (long qm = 0; qm < nprob * M; ++qm) {
            const long q = qm / M, m = qm % M;
            const T* p = partial.data() + q * S * psize;
            T* d = pr[q].dw + m * K;
            for (long k = 0; k < K; ++k) {
                T& dk = d[rows.col ? rows.col[k] : k];
                T acc = pr[q].accumulate ? dk : T(0);
                for (long sl = 0; sl < S; ++sl) acc += p[sl * psize + k * Mpad + m];
                dk = acc;
            }
        }
    }
}

}  // namespace

// At most one vector of output channels: slivers one vector wide, not NV (half of every sliver would
// be zeros).
template <typename T>
void implicit_weight_grad(const ImplicitWgrad<T>* problems, long nprob, const WgradRows& rows, long K, long M) {
    if (M <= Vec<T>::lanes) return weight_grad_gemm<T, 1>(problems, nprob, rows, K, M);
    weight_grad_gemm<T, GemmBlock<T>::NV>(problems, nprob, rows, K, M);
}

// Per group, the segments are the images; their input copies are built a chunk of images (at most
// kImplicitCopyBytes, at least one image) at a time, and the chunks' sums added in order.
template <typename T>
void conv2d_weight_grad_implicit(const T* x, const T* dy, T* dw, const ConvShape& s) {
    const ImplicitGeometry geo = implicit_geometry<T>(s, s.H_out);
    const long G = s.groups, M = s.M_g(), K = s.K(), HWo = s.HW_out(), xs_size = implicit_copy_size(s, geo);
    const long chunk = std::clamp(kImplicitCopyBytes / (G * xs_size * (long)sizeof(T)), 1L, s.N);
    Buffer<T> xs(chunk * G * xs_size);
    Buffer<long> off(K), pos(HWo), col(K), lo(K), hi(K);
    // Rows ordered k = (a, c, b), so that a tile's MR rows mostly share their kernel row a and with it the
    // output rows [i0, i1) whose window has row a inside x: the positions of the others are skipped.
    implicit_offsets(s, geo, off.data(), true);
    std::vector<long> i0(s.kH, s.H_out), i1(s.kH, 0);  // kernel row a is in range for output rows [i0, i1)
    for (long i = 0; i < s.H_out; ++i) {
        long alo, ahi;
        valid_range(i * s.sh - s.ph, s.dil_h, s.kH, s.H, alo, ahi);
        for (long a = alo; a < ahi; ++a) i0[a] = std::min(i0[a], i), i1[a] = i + 1;
    }
    for (long a = 0, k = 0; a < s.kH; ++a)
        for (long c = 0; c < s.C_g(); ++c)
            for (long b = 0; b < s.kW; ++b, ++k) {
                col.data()[k] = (c * s.kH + a) * s.kW + b;
                lo.data()[k] = i0[a] * s.W_out;
                hi.data()[k] = std::max(i0[a], i1[a]) * s.W_out;
            }
    for (long j = 0; j < HWo; ++j) pos.data()[j] = j / s.W_out * geo.Wq + j % s.W_out;
    for (long n0 = 0; n0 < s.N; n0 += chunk) {
        const long n1 = std::min(s.N, n0 + chunk);
#pragma omp parallel for schedule(static) num_threads(threads_for((n1 - n0) * G, s.flops()))
        for (long t = 0; t < (n1 - n0) * G; ++t)
            implicit_fill(x + ((n0 + t / G) * s.C_in + t % G * s.C_g()) * s.HW(), s, geo, 0, xs.data() + t * xs_size);
        std::vector<ImplicitWgrad<T>> groups;
        for (long g = 0; g < G; ++g)
            groups.push_back({xs.data() + g * xs_size, G * xs_size, pos.data(), n1 - n0, HWo,
                              dy + (n0 * s.C_out + g * M) * HWo, s.C_out * HWo, HWo, dw + g * M * K, n0 > 0});
        implicit_weight_grad(groups.data(), G, WgradRows{off.data(), col.data(), lo.data(), hi.data()}, K, M);
    }
}

#define FASTCONV_INSTANTIATE(T)                                                            \
    template void conv2d_implicit<T>(const T*, const T*, const T*, T*, const ConvShape&); \
    template void conv2d_input_grad_implicit<T>(const T*, const T*, T*, const ConvShape&);   \
    template void conv2d_weight_grad_implicit<T>(const T*, const T*, T*, const ConvShape&);  \
    template void implicit_weight_grad<T>(const ImplicitWgrad<T>*, long, const WgradRows&, long, long);
FASTCONV_INSTANTIATE(float)
FASTCONV_INSTANTIATE(double)
#undef FASTCONV_INSTANTIATE

}  // namespace fastconv
