// winograd.cpp — dense r x r stride-1 convolution by Winograd's F(m x m, r x r): forward, input gradient
// (the forward on dy with the rotated, transposed kernel) and weight gradient, side by side.
//
// The tiles are processed in chunks of whole tile rows, small enough that a chunk's transformed input
// and GEMM output stay in the outer caches, each taken by one thread through all its passes: transform
// the input, (m+2)² GEMMs on the packed micro-kernel, transform back (or, for the weight gradient,
// accumulate). Every element's sum runs in a fixed order over fixed chunks, so results do not depend
// on the thread count. A dilated layer is d_h·d_w undilated ones, one per stride phase.
#include "winograd.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "gemm.h"
#include "implicit.h"
#include "parallel.h"

namespace fastconv {

template <int r>
const char* winograd_why_not(const ConvShape& s) {
    if (s.kH != r || s.kW != r) return r == 3 ? "needs a 3x3 kernel" : "needs a 5x5 kernel";
    if (s.sh != 1 || s.sw != 1) return "needs stride 1";
    if (s.groups != 1) return "needs groups == 1";
    return nullptr;
}

template <int r>
const char* winograd_input_grad_why_not(const ConvShape& s) {
    if (const char* why = winograd_why_not<r>(s)) return why;
    if (s.ph > (r - 1) * s.dil_h || s.pw > (r - 1) * s.dil_w)
        return "needs padding <= dilation * (kernel size - 1) (the input grad is a forward conv with padding "
               "dilation * (kernel size - 1) - padding)";
    return nullptr;
}

namespace {

// Transformed input plus GEMM output of one chunk of tiles take about this many bytes per thread (the
// outer caches).
constexpr long kChunkBytes = 2L << 20;
// The weight gradient's partial sums (one transformed dw per slice of the tiles) take at most this much.
constexpr long kPartialBytes = 128L << 20;

// A B packer for a B given transposed: B[p, j] = Bt[j*ld + p].
template <typename T>
struct TransposedB {
    const T* Bt;
    long ld;
    void operator()(long pc, long kc, long jc, long nc, T* Bp) const {
        pack_b_transposed<T>(kc, nc, Bt + jc * ld + pc, ld, Bp);
    }
};

// Output phase k of a dilated layer (one phase when undilated): the outputs (q + d_h·u, r + d_w·v), an
// Hg x Wg grid; an undilated conv on the input's matching sub-image computes them. in/out place
// the grid in x (and dy's sub-image in the weight gradient: in) and y. p = 2 (a layer dilated by 2 in
// columns): phase k is row phase q = k with both column phases, interleaved as in the plane, in one
// grid of W_out columns (transform_tiles<p = 2>).
struct Phase {
    long Hg, Wg;
    PlaneMap in, out;
    Phase(const ConvShape& s, long k, int p = 1) {
        const long dw = s.dil_w / p, q = k / dw, r = k % dw;
        Hg = std::max(0L, ceil_div(s.H_out - q, s.dil_h)), Wg = std::max(0L, ceil_div(s.W_out - r, dw));
        in = {s.dil_h, dw, q - s.ph, r - s.pw};
        out = {s.dil_h, dw, q, r};
    }
};

// The tiling of one phase: tiles of m x m outputs (of each of p column phases), th x tw per image,
// rows_total tile rows in all.
struct Tiling {
    long th, tw, rows_total;
    Tiling(long N, const Phase& ph, int m, int p = 1)
        : th(ceil_div(ph.Hg, m)), tw(ceil_div(ph.Wg, p * m)), rows_total(N * th) {}
};

// Tile rows per chunk whose transformed input plus GEMM output (channels in all) take about `bytes`.
inline long rows_for(const Tiling& tl, long channels, int a, long elem, long bytes) {
    return std::clamp(bytes / (channels * a * a * tl.tw * elem), 1L, tl.rows_total);
}

// Tiles per chunk of the forward's T tiles, at most P_max: the size whose chunks, dealt to nth threads as
// they come free, leave the busiest thread the fewest GEMM columns. The micro-kernel computes whole
// slivers of NR columns, so a chunk costs its tiles rounded up to NR, plus c0 columns for streaming the
// transformed weights once more; sizes tried are whole slivers and even shares.
inline long chunk_tiles(long T, long P_max, long NR, long nth, long c0) {
    auto makespan = [&](long P) {
        std::vector<long> load(nth, 0);
        for (long t0 = 0; t0 < T; t0 += P)
            *std::min_element(load.begin(), load.end()) += round_up(std::min(P, T - t0), NR) + c0;
        return *std::max_element(load.begin(), load.end());
    };
    P_max = std::clamp(P_max, 1L, T);
    long best = P_max, best_cost = makespan(P_max);
    auto consider = [&](long P) {
        const long cost = makespan(P);
        if (cost < best_cost || (cost == best_cost && P > best)) best = P, best_cost = cost;
    };
    for (long P = NR; P < P_max; P += NR) consider(P);
    // Even shares from the fewest that fit P_max, a few rounds of nth (many tiles: the slivers balance).
    const long fewest = nth * ceil_div(ceil_div(T, P_max), nth);
    for (long shares = fewest; shares < fewest + 8 * nth && ceil_div(T, shares) >= NR / 2; shares += nth)
        consider(ceil_div(T, shares));
    return best;
}

// Chunk `chunk` of P tiles of a th x tw tile grid with rows_total rows: its tiles, in TileRows.
inline TileRows chunk_rows(const Tiling& tl, long P, long chunk) {
    const long t0 = chunk * P, t1 = std::min(t0 + P, tl.rows_total * tl.tw);
    const long row0 = t0 / tl.tw, last = (t1 - 1) / tl.tw;
    return {row0, last - row0 + 1, tl.th, tl.tw, t0 % tl.tw, tl.tw - 1 - (t1 - 1) % tl.tw};
}

// Ap = U[ξ] = (G g Gᵀ)[ξ] for every (o, i) pair of a K x C kernel g = w[o, i] (r x r) — or, `flipped`,
// g = w[i, o] rotated by 180° (the input gradient's kernel) — packed as gemm.h's A per ξ (ap elements each). In the
// packed layout one MR-row sliver of one KC block is a contiguous run, element (i, o) at (i - pc)·MR + o - o0:
// each lane of a vector takes the kernel of the pair it lands on, so every ξ's result is stored whole,
// with no transpose. A task is one sliver of one KC block.
template <typename T, int m, int r>
void transform_weights(const T* w, long K, long C, bool flipped, T* Ap, long ap) {
    using V = typename Vec<T>::type;
    constexpr int a = m + r - 1, L = Vec<T>::lanes, MR = GemmBlock<T>::MR;
    constexpr long KC = GemmBlock<T>::KC;  // the depth of pack_a's blocks, which gemm_packed reads
    const long Kpad = round_up(K, MR), kblocks = ceil_div(C, KC), tasks = Kpad / MR * kblocks;
#pragma omp parallel for schedule(static) num_threads(threads_for(tasks, 100.0 * K * C))
    for (long task = 0; task < tasks; ++task) {
        const long o0 = task / kblocks * MR, pc = task % kblocks * KC, run = std::min(KC, C - pc) * MR;
        T* const dst = Ap + pc * Kpad + o0 * (run / MR);
        for (long q0 = 0; q0 < run; q0 += L) {
            const long n = std::min<long>(L, run - q0);
            // g[k] lane l := tap k of lane l's kernel: each kernel's r² taps lie contiguous in w, so the
            // lanes' kernels load as rows, L taps at a time, and a transpose turns them into taps.
            V g[(r * r + L - 1) / L * L];
            const T* kernel[L];
            for (long l = 0; l < L; ++l) {
                const long i = pc + (q0 + l) / MR, o = o0 + (q0 + l) % MR;
                // the sliver's padding rows (and lanes past the run) stay zero
                kernel[l] = l < n && o < K ? w + (flipped ? i * K + o : o * C + i) * r * r : nullptr;
            }
            for (int k0 = 0; k0 < r * r; k0 += L) {
                V* rows = g + k0;
                for (long l = 0; l < L; ++l) rows[l] = kernel[l] ? load_first<T>(kernel[l] + k0, r * r - k0) : V{};
                transpose<T>(rows);
            }
            V cols[r][a];  // G · column kc of g (the input grad's kernel rotated by 180°: taps reversed)
            for (int kc = 0; kc < r; ++kc) {
                V in[r];
                for (int kr = 0; kr < r; ++kr) in[kr] = g[flipped ? r * r - 1 - (kr * r + kc) : kr * r + kc];
                mat_apply<T, Winograd<m, r>::G>(in, cols[kc]);
            }
            for (int xi = 0; xi < a; ++xi) {
                V in[r], out[a];
                for (int kc = 0; kc < r; ++kc) in[kc] = cols[kc][xi];
                mat_apply<T, Winograd<m, r>::G>(in, out);
                for (int eta = 0; eta < a; ++eta) {
                    T* p = dst + (xi * a + eta) * ap + q0;
                    if (n == L) store(p, out[eta]);
                    else store_first(p, out[eta], n);
                }
            }
        }
    }
}

}  // namespace

// y (N, K, H_out, W_out) = w ⋆ x + b, w (K, C, r, r) — or, `flipped`, w (C, K, r, r) read rotated and
// transposed. Each task is one chunk of tile rows taken from input to output by one thread, on its own
// buffers: no barrier between the passes, so one descheduled thread on a loaded machine holds up only
// its own chunks. Chunks hold at least a few GEMM column slivers and at most a share of the tile rows.
// p = 2 for layers dilated by 2 in columns: a chunk's tiles of both column phases (P of each, 2P GEMM
// columns) go through the passes together, each plane row copied and each output row stored once.
template <typename T, int m, int r, int p>
static void winograd_forward(const T* x, const T* w, const T* b, T* y, const ConvShape& s, bool flipped) {
    constexpr int a = m + r - 1, L = Vec<T>::lanes, NR = GemmBlock<T>::NR;
    const long K = s.C_out, C = s.C_in;
    const long phases = s.dil_h * s.dil_w / p, nth = get_num_threads();
    Tiling t0(s.N, Phase(s, 0, p), m, p);  // phase 0 is the largest: it sizes the buffers
    // Every chunk streams all of U: about a quarter sliver's work while U stays in the outer caches, a
    // whole sliver's once it spills past them (V2, V3), where fewer, larger chunks then pay. Chunk sizes
    // count tiles of every column phase (NR / p of them fill a sliver).
    const bool big_u = a * a * K * C * (long)sizeof(T) > 2 * kChunkBytes;
    const long nr = NR / p, c0 = big_u ? nr : nr / 4;
    const long P_max = std::max(t0.tw * rows_for(t0, K + C, a, p * sizeof(T), kChunkBytes), (big_u ? 8L : 4L) * nr);
    const long pc = chunk_tiles(t0.rows_total * t0.tw, P_max, nr, nth, c0), cols = p * pc;
    const long ap = packed_a_size<T>(K, C);
    Buffer<T> Ap(a * a * ap);
    transform_weights<T, m, r>(w, K, C, flipped, Ap.data(), ap);
    const int nt = threads_for(ceil_div(t0.rows_total * t0.tw, pc) * phases, s.flops() / 4);
    const long vsize = a * a * C * cols, msize = a * a * K * cols + L, bsize = packed_b_size<T>(C, cols);
    PerThread<T> work(nt, vsize + msize + bsize + transform_scratch<T, m, a, p>(pc));
    // The chunks of every phase in one parallel loop: phase k's are tasks first[k] .. first[k + 1] - 1.
    std::vector<long> first(phases + 1, 0), chunk_size(phases, 1);
    for (long k = 0; k < phases; ++k) {
        const Tiling tl(s.N, Phase(s, k, p), m, p);
        const long tiles = tl.rows_total * tl.tw;
        chunk_size[k] = k == 0 ? pc : chunk_tiles(std::max(tiles, 1L), pc, nr, nth, c0);
        first[k + 1] = first[k] + ceil_div(tiles, chunk_size[k]);
    }
    Stop stop;
#pragma omp parallel for schedule(dynamic) num_threads(nt)
    for (long task = 0; task < first[phases]; ++task) {
        if (stop()) continue;
        const long k = std::upper_bound(first.begin(), first.end(), task) - first.begin() - 1;
        const Phase ph(s, k, p);
        const Tiling tl(s.N, ph, m, p);
        T *V = work.get(), *M = V + vsize, *Bp = M + msize, *buf = Bp + bsize;
        const TileRows tr = chunk_rows(tl, chunk_size[k], task - first[k]);
        std::fill(M + msize - L, M + msize, T(0));  // read past by the last vector of the inverse
        for (long c = 0; c < C; ++c)
            transform_tiles<T, Winograd<m, r>::BT, m, p>(x + c * s.HW(), C * s.HW(), s.H, s.W, ph.in, tr,
                                                         V + c * cols, C * cols, buf, c + 1 < C ? s.HW() : 0);
        for (int e = 0; e < a * a; ++e)
            gemm_packed(K, p * tr.tiles(), C, Ap.data() + e * ap, StridedB<T>{V + e * C * cols, cols, 1}, Bp,
                        M + e * K * cols, cols, false);
        for (long o = 0; o < K; ++o)
            inverse_tiles<T, m, r, p>(M + o * cols, K * cols, tr, b ? b[o] : T(0), y + o * s.HW_out(),
                                      K * s.HW_out(), ph.Hg, ph.Wg, s.W_out, ph.out, buf);
    }
}

// Layers dilated by 2 in columns take both column phases of a row phase at once.
template <typename T, int m, int r>
static void winograd_forward(const T* x, const T* w, const T* b, T* y, const ConvShape& s, bool flipped) {
    if (s.dil_w == 2) winograd_forward<T, m, r, 2>(x, w, b, y, s, flipped);
    else winograd_forward<T, m, r, 1>(x, w, b, y, s, flipped);
}

template <typename T, int m, int r>
void conv2d_winograd(const T* x, const T* w, const T* b, T* y, const ConvShape& s) {
    winograd_forward<T, m, r>(x, w, b, y, s, false);
}

template <typename T, int m, int r>
void conv2d_input_grad_winograd(const T* dy, const T* w, T* dx, const ConvShape& s) {
    winograd_forward<T, m, r>(dy, w, nullptr, dx, input_grad_as_forward(s), true);
}

// dw (K, C, r, r) = Gᵀ [Σ_tiles (A dy Aᵀ) ⊙ (Bᵀ x Bᵀᵀ)] G: per ξ a GEMM Z[ξ] (K x C) += Ŷ[ξ] (K x tiles) · V[ξ]ᵀ.
// The chunks of tiles (of every phase) are dealt in order to S slices, S fixed by the problem alone; a
// slice's chunks run end to end on one thread into the slice's own Z, and the slices are added in
// order: one parallel region, and results that do not depend on the thread count. p = 2: as the forward's.
template <typename T, int m, int r, int p>
static void winograd_weight_grad(const T* x, const T* dy, T* dw, const ConvShape& s) {
    constexpr int a = m + r - 1;
    const auto& G = Winograd<m, r>::G;
    const long K = s.C_out, C = s.C_in, zsize = a * a * K * C;
    Tiling t0(s.N, Phase(s, 0, p), m, p);
    const long pc = t0.tw * rows_for(t0, K + C, a, p * sizeof(T), kChunkBytes), cols = p * pc;
    std::vector<std::pair<long, long>> chunks;  // (phase, first tile row)
    for (long k = 0; k < s.dil_h * s.dil_w / p; ++k) {
        Tiling tl(s.N, Phase(s, k, p), m, p);
        for (long row0 = 0; tl.tw > 0 && row0 < tl.rows_total; row0 += pc / tl.tw) chunks.push_back({k, row0});
    }
    const long nchunks = (long)chunks.size();
    const long S = std::clamp(kPartialBytes / long(zsize * sizeof(T)), 1L, std::min(nchunks, 8L));
    Buffer<T> Z(S * zsize);
    const int nt = threads_for(S, s.flops() / 4);
    const long vsize = a * a * C * cols, ysize = a * a * K * cols, ap = packed_a_size<T>(K, cols);
    const long bsize = packed_b_size<T>(cols, C), scratch = transform_scratch<T, m, a, p>(pc);
    PerThread<T> work(nt, vsize + ysize + ap + bsize + scratch);
    Stop stop;
#pragma omp parallel for schedule(dynamic) num_threads(nt)
    for (long sl = 0; sl < S; ++sl) {
        T *V = work.get(), *Y = V + vsize, *Ap = Y + ysize, *Bp = Ap + ap, *buf = Bp + bsize, *Zs = Z.data() + sl * zsize;
        for (long c0 = nchunks * sl / S; c0 < nchunks * (sl + 1) / S && !stop(); ++c0) {
            const Phase ph(s, chunks[c0].first, p);
            const Tiling tl(s.N, ph, m, p);
            const long row0 = chunks[c0].second;
            const TileRows tr{row0, std::min(pc / tl.tw, tl.rows_total - row0), tl.th, tl.tw};
            const long P = p * tr.tiles();
            for (long c = 0; c < C; ++c)
                transform_tiles<T, Winograd<m, r>::BT, m, p>(x + c * s.HW(), C * s.HW(), s.H, s.W, ph.in, tr,
                                                             V + c * cols, C * cols, buf, c + 1 < C ? s.HW() : 0);
            for (long o = 0; o < K; ++o)
                transform_tiles<T, Winograd<m, r>::A, m, p>(dy + o * s.HW_out(), K * s.HW_out(), s.H_out, s.W_out,
                                                            ph.out, tr, Y + o * cols, K * cols, buf,
                                                            o + 1 < K ? s.HW_out() : 0);
            for (long e = 0; e < a * a; ++e) {
                pack_a(K, P, Y + e * K * cols, cols, 1, Ap);
                gemm_packed(K, C, P, Ap, TransposedB<T>{V + e * C * cols, cols}, Bp, Zs + e * K * C, C,
                            c0 > nchunks * sl / S);
            }
        }
    }
    for (long sl = 1; sl < S; ++sl) {
        const T* Zs = Z.data() + sl * zsize;
#pragma omp parallel for schedule(static) num_threads(threads_for(zsize / 16384 + 1))
        for (long i = 0; i < zsize; ++i) Z.data()[i] += Zs[i];
    }
#pragma omp parallel for schedule(static) num_threads(threads_for(K, 300.0 * K * C))
    for (long o = 0; o < K; ++o)
        for (long i = 0; i < C; ++i) {
            double zg[a][r];  // Z[ξ][η] · G, then Gᵀ · that
            for (int xi = 0; xi < a; ++xi)
                for (int c = 0; c < r; ++c) {
                    double acc = 0;
                    for (int eta = 0; eta < a; ++eta) acc += Z.data()[((xi * a + eta) * K + o) * C + i] * G.v[eta][c];
                    zg[xi][c] = acc;
                }
            for (int k = 0; k < r; ++k)
                for (int c = 0; c < r; ++c) {
                    double acc = 0;
                    for (int xi = 0; xi < a; ++xi) acc += G.v[xi][k] * zg[xi][c];
                    dw[((o * C + i) * r + k) * r + c] = T(acc);
                }
        }
}

template <typename T, int m, int r>
void conv2d_weight_grad_winograd(const T* x, const T* dy, T* dw, const ConvShape& s) {
    if (s.dil_w == 2) winograd_weight_grad<T, m, r, 2>(x, dy, dw, s);
    else winograd_weight_grad<T, m, r, 1>(x, dy, dw, s);
}

template const char* winograd_why_not<3>(const ConvShape&);
template const char* winograd_why_not<5>(const ConvShape&);
template const char* winograd_input_grad_why_not<3>(const ConvShape&);
template const char* winograd_input_grad_why_not<5>(const ConvShape&);

#define FASTCONV_INSTANTIATE(T, m, r)                                                                 \
    template void conv2d_winograd<T, m, r>(const T*, const T*, const T*, T*, const ConvShape&);       \
    template void conv2d_input_grad_winograd<T, m, r>(const T*, const T*, T*, const ConvShape&);      \
    template void conv2d_weight_grad_winograd<T, m, r>(const T*, const T*, T*, const ConvShape&);
FASTCONV_INSTANTIATE(float, 2, 3)
FASTCONV_INSTANTIATE(float, 4, 3)
FASTCONV_INSTANTIATE(float, 4, 5)
FASTCONV_INSTANTIATE(double, 2, 3)
FASTCONV_INSTANTIATE(double, 4, 3)
FASTCONV_INSTANTIATE(double, 4, 5)
#undef FASTCONV_INSTANTIATE

}  // namespace fastconv
