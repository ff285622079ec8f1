// tiled_poly.cpp — tiled conv with few, large phases, on a polyphase copy of the input.
//
// Phase (th, tw) owns the outputs (th + T_h*i', tw + T_w*j'), whose windows start at padded input
// rows i'*Ph + th*sh (Ph = T_h*sh) and columns j'*Pw + tw*sw. Split the zero-padded input into its
// Ph x Pw polyphase planes, xq[n,c,ρ,γ][u,v] = xpad[n,c, u*Ph + ρ, v*Pw + γ]: then the im2col row
// (c, a, b) of a phase is one window of one plane, (ρ, u0) = divmod(th*sh + a, Ph) and likewise for
// columns — every output row a contiguous copy, where the strided dense conv per phase gathered
// element by element through bounds checks. The forward and the input gradient are then the GEMMs of
// tiled_conv.cpp over each phase's columns q = (n, i', j'), all phases and column blocks in one
// parallel region; the input gradient scatter-adds into a polyphase dx and maps it back once. (The
// weight gradient of such phases is tiled_implicit.cpp's.)
#include <algorithm>

#include "gemm.h"
#include "parallel.h"
#include "tiled_conv.h"

namespace fastconv {

namespace {

struct Poly {
    long Ph, Pw, Hq, Wq;
    explicit Poly(const TiledShape& s)
        : Ph(s.T_h * s.sh), Pw(s.T_w * s.sw), Hq(s.rows(0) + ((s.T_h - 1) * s.sh + s.kH - 1) / Ph),
          Wq(s.cols(0) + ((s.T_w - 1) * s.sw + s.kW - 1) / Pw) {}
    long plane() const { return Hq * Wq; }
    long channel() const { return Ph * Pw * plane(); }
    // Offset within a channel of window element (0, 0) for padded row/column offsets eh, ew.
    long at(long eh, long ew) const { return ((eh % Ph) * Pw + ew % Pw) * plane() + (eh / Ph) * Wq + ew / Pw; }
};

// xq <-> x for the planes p = (n, c) (ToPoly: fill xq, zeros outside x; else dx = xq's in-range
// slots, every x element once). Called inside the kernels' parallel regions: an orphaned `omp for`
// (with its barrier) saves a fork/join per call.
template <typename T, bool ToPoly>
void convert(T* x, T* xq, const TiledShape& s, const Poly& pq) {
#pragma omp for schedule(static)
    for (long p = 0; p < s.N * s.C_in; ++p) {
        T* xp = x + p * s.H * s.W;
        T* q = xq + p * pq.channel();
        for (long rho = 0; rho < pq.Ph; ++rho)
            for (long gam = 0; gam < pq.Pw; ++gam)
                for (long u = 0; u < pq.Hq; ++u) {
                    const long r = u * pq.Ph + rho - s.ph;
                    T* qr = q + (rho * pq.Pw + gam) * pq.plane() + u * pq.Wq;
                    // v with 0 <= v*Pw + gam - pw < W: [v0, v1)
                    long v0 = 0, v1 = 0;
                    if (r >= 0 && r < s.H) {
                        v0 = std::min(pq.Wq, s.pw > gam ? ceil_div(s.pw - gam, pq.Pw) : 0L);
                        v1 = std::clamp(ceil_div(s.W + s.pw - gam, pq.Pw), v0, pq.Wq);
                    }
                    T* xr = xp + (v1 > v0 ? r * s.W + gam - s.pw : 0);  // read at v in [v0, v1) only
                    if (ToPoly) {
                        std::fill(qr, qr + v0, T(0));
                        for (long v = v0; v < v1; ++v) qr[v] = xr[v * pq.Pw];
                        std::fill(qr + v1, qr + pq.Wq, T(0));
                    } else {
                        for (long v = v0; v < v1; ++v) xr[v * pq.Pw] = qr[v];
                    }
                }
    }
}

// Column q = (n, i', j') of a phase with rw x cw positions per image: walk [q0, q0 + nq) by output rows.
struct Walk {
    long rw, cw, n, i, j;
    Walk(long rw_, long cw_, long q0) : rw(rw_), cw(cw_), n(q0 / (rw_ * cw_)), i(q0 % (rw_ * cw_) / cw_), j(q0 % cw_) {}
    void next() {  // to the start of the next output row
        j = 0;
        if (++i == rw) i = 0, ++n;
    }
};

// row[t] = xq[n_t, window element + i'_t*Wq + j'_t] for the columns of one block (Add: the adjoint).
// Short output rows are gathered as whole vectors: reads go past a window row (and past xq), writes
// past row + nq (the buffers carry kSlack elements of slack). The scatter-add stays element-wise: a
// vector read-modify-write would overlap the previous row's store (window rows are Wq apart) and
// stall on store forwarding.
template <typename T, bool Add>
void poly_row(T* base, long nstride, const Poly& pq, long rw, long cw, long q0, long nq, T* row) {
    using V = typename Vec<T>::type;
    constexpr int L = Vec<T>::lanes;
    Walk wk(rw, cw, q0);
    if (!Add && cw <= L && wk.j == 0) {  // one vector per output row (a final partial row is copied whole)
        const T* src = base + wk.n * nstride + wk.i * pq.Wq;
        for (long t = 0, i = wk.i, n = wk.n; t < nq; t += cw) {
            store(row + t, load<V>(src));
            src += pq.Wq;
            if (++i == rw) i = 0, src = base + ++n * nstride;
        }
        return;
    }
    for (long t = 0; t < nq; wk.next()) {
        const long seg = std::min(cw - wk.j, nq - t);
        T* src = base + wk.n * nstride + wk.i * pq.Wq + wk.j;
        T* r = row + t;
        if (Add)
            for (long u = 0; u < seg; ++u) src[u] += r[u];
        else  // whole vectors: the excess lands where the next segment (or row) is written next
            for (long u = 0; u < seg; u += L) store(r + u, load<V>(src + u));
        t += seg;
    }
}

// The K rows of a phase's im2col block, or their adjoint scatter-add.
template <typename T, bool Add>
void poly_block(T* xq, const TiledShape& s, const Poly& pq, long th, long tw, long q0, long nq, T* col) {
    const long kk = s.kH * s.kW, nstride = s.C_in * pq.channel();
    for (long k = 0; k < s.K(); ++k) {
        const long c = k / kk, a = k % kk / s.kW, b = k % s.kW;
        T* base = xq + c * pq.channel() + pq.at(th * s.sh + a, tw * s.sw + b);
        poly_row<T, Add>(base, nstride, pq, s.rows(th), s.cols(tw), q0, nq, col + k * nq);
    }
}

// Output (dy) element of column block entry (o, t) <-> buf[o*nq + t]; ToBuf gathers, else y = buf + bias.
template <typename T, bool ToBuf>
void out_block(T* y, const T* b, const TiledShape& s, long th, long tw, long q0, long nq, T* buf) {
    const long HWo = s.H_out * s.W_out;
    for (long o = 0; o < s.C_out; ++o) {
        Walk wk(s.rows(th), s.cols(tw), q0);
        for (long t = 0; t < nq; wk.next()) {
            const long seg = std::min(wk.cw - wk.j, nq - t), i = th + s.T_h * wk.i;
            T* yr = y + (wk.n * s.C_out + o) * HWo + i * s.W_out + tw + s.T_w * wk.j;
            T* r = buf + o * nq + t;
            for (long u = 0; u < seg; ++u) {
                if (ToBuf)
                    r[u] = yr[u * s.T_w];
                else
                    yr[u * s.T_w] = r[u] + (b ? b[o * s.b_o + i * s.b_i + (tw + s.T_w * (wk.j + u)) * s.b_j] : T(0));
            }
            t += seg;
        }
    }
}

template <typename T>
constexpr long NQ = GemmBlock<T>::NC;
constexpr long kSlack = 64;  // >= the lanes of any vector

inline double flops(const TiledShape& s) { return 2.0 * s.N * s.C_out * s.H_out * s.W_out * s.K(); }

}  // namespace

template <typename T>
void tiled_conv2d_phase_poly(const T* x, const T* w, const T* b, T* y, const TiledShape& s) {
    const Poly pq(s);
    const long K = s.K(), phases = s.phases(), blocks = ceil_div(s.N * s.rows(0) * s.cols(0), NQ<T>);
    Buffer<T> xq(s.N * s.C_in * pq.channel() + kSlack);
    const int nt = threads_for(phases * blocks, flops(s));
    PerThread<T> Aps(nt, packed_a_size<T>(s.C_out, K)), Bps(nt, packed_b_size<T>(K, NQ<T>)),
        cols(nt, K * NQ<T> + kSlack), outs(nt, s.C_out * NQ<T>);
    Stop stop;
#pragma omp parallel num_threads(nt)
    {
        convert<T, true>(const_cast<T*>(x), xq.data(), s, pq);
        T *const Ap = Aps.get(), *const Bp = Bps.get(), *const col = cols.get(), *const out = outs.get();
        long packed = -1;
#pragma omp for schedule(dynamic)
        for (long task = 0; task < phases * blocks; ++task) {
            if (stop()) continue;
            const long ph = task / blocks, th = ph / s.T_w, tw = ph % s.T_w;
            const long cols = s.N * s.rows(th) * s.cols(tw), q0 = (task % blocks) * NQ<T>;
            if (q0 >= cols) continue;
            const long nq = std::min(NQ<T>, cols - q0);
            if (packed != ph) pack_a(s.C_out, K, w + ph * s.C_out * K, K, 1L, Ap), packed = ph;
            poly_block<T, false>(xq.data(), s, pq, th, tw, q0, nq, col);
            gemm_packed(s.C_out, nq, K, Ap, StridedB<T>{col, nq, 1}, Bp, out, nq, false);
            out_block<T, false>(y, b, s, th, tw, q0, nq, out);
        }
    }
}

// Threads split the batch (each owns its images' polyphase dx), so the scatter-add needs no locks.
template <typename T>
void tiled_conv2d_input_grad_phase_poly(const T* dy, const T* w, T* dx, const TiledShape& s) {
    const Poly pq(s);
    const long K = s.K();
    Buffer<T> dxq(s.N * s.C_in * pq.channel() + kSlack);
    const int nt = threads_for(s.N, flops(s));
    PerThread<T> Aps(nt, packed_a_size<T>(K, s.C_out)), Bps(nt, packed_b_size<T>(s.C_out, NQ<T>)),
        cols(nt, K * NQ<T> + kSlack), dybs(nt, s.C_out * NQ<T>);
#pragma omp parallel num_threads(nt)
    {
        T *const Ap = Aps.get(), *const Bp = Bps.get(), *const col = cols.get(), *const dyb = dybs.get();
#pragma omp for schedule(static)
        for (int part = 0; part < nt; ++part) {
            const long n0 = s.N * part / nt, n1 = s.N * (part + 1) / nt;
            std::fill(dxq.data() + n0 * s.C_in * pq.channel(), dxq.data() + n1 * s.C_in * pq.channel(), T(0));
            std::fill(dx + n0 * s.C_in * s.H * s.W, dx + n1 * s.C_in * s.H * s.W, T(0));
            for (long ph = 0; ph < s.phases(); ++ph) {
                const long th = ph / s.T_w, tw = ph % s.T_w, P = s.rows(th) * s.cols(tw);
                if (P == 0) continue;
                pack_a(K, s.C_out, w + ph * s.C_out * K, 1L, K, Ap);
                for (long q0 = n0 * P; q0 < n1 * P; q0 += NQ<T>) {
                    const long nq = std::min(NQ<T>, n1 * P - q0);
                    out_block<T, true>(const_cast<T*>(dy), nullptr, s, th, tw, q0, nq, dyb);
                    gemm_packed(K, nq, s.C_out, Ap, StridedB<T>{dyb, nq, 1}, Bp, col, nq, false);
                    poly_block<T, true>(dxq.data(), s, pq, th, tw, q0, nq, col);
                }
            }
        }
        convert<T, false>(dx, dxq.data(), s, pq);  // after the barrier of the loop above
    }
}

#define FASTCONV_INSTANTIATE(T)                                                                   \
    template void tiled_conv2d_phase_poly<T>(const T*, const T*, const T*, T*, const TiledShape&);    \
    template void tiled_conv2d_input_grad_phase_poly<T>(const T*, const T*, T*, const TiledShape&);
FASTCONV_INSTANTIATE(float)
FASTCONV_INSTANTIATE(double)
#undef FASTCONV_INSTANTIATE

}  // namespace fastconv
