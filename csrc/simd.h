// simd.h — the vector type every kernel computes with, fixed by the ISA level a kernel library is
// compiled for (csrc/build_flags.py; the level that runs is chosen at load time, dispatch.cpp).
//
// GCC vector extensions (`__attribute__((vector_size(N)))`) rather than intrinsics: the same source
// gives AVX-512, AVX2, SSE2 or NEON code, and `a * b + c` on these types contracts to an FMA
// instruction wherever the target has one (GCC contracts by default in C++). N is 64 bytes under
// __AVX512F__, 32 under __AVX2__, 16 otherwise (plain x86-64 has SSE2, aarch64 NEON).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#if defined(__SSE2__)
#include <immintrin.h>
#endif

namespace fastconv {

#if defined(__AVX512F__)
constexpr int kVectorBytes = 64;
constexpr const char* kSimdName = "avx512";
#elif defined(__AVX2__)
constexpr int kVectorBytes = 32;
constexpr const char* kSimdName = "avx2";
#elif defined(__AVX__)
constexpr int kVectorBytes = 32;
constexpr const char* kSimdName = "avx";
#elif defined(__SSE2__)
constexpr int kVectorBytes = 16;
constexpr const char* kSimdName = "sse2";
#elif defined(__aarch64__)
constexpr int kVectorBytes = 16;
constexpr const char* kSimdName = "neon";
#else
constexpr int kVectorBytes = 16;
constexpr const char* kSimdName = "generic";
#endif

// Vec<T>::type holds kVectorBytes / sizeof(T) lanes of T. Spelled out per type because a dependent
// type inside vector_size is a GCC corner we do not want to rely on.
template <typename T> struct Vec;
// Vec<T>::itype: the same-width integer vector that a comparison of two Vec<T>::type yields.
template <> struct Vec<float> {
    typedef float type __attribute__((vector_size(kVectorBytes)));
    typedef int32_t itype __attribute__((vector_size(kVectorBytes)));
    typedef int32_t int_t;
    static constexpr int lanes = kVectorBytes / sizeof(float);
};
template <> struct Vec<double> {
    typedef double type __attribute__((vector_size(kVectorBytes)));
    typedef int64_t itype __attribute__((vector_size(kVectorBytes)));
    typedef int64_t int_t;
    static constexpr int lanes = kVectorBytes / sizeof(double);
};

// Unaligned load/store through memcpy: no alignment or strict-aliasing assumptions, and GCC
// turns it into a single vmovups/vmovupd.
template <typename V, typename T>
inline V load(const T* p) {
    V v;
    std::memcpy(&v, p, sizeof(V));
    return v;
}

template <typename V, typename T>
inline void store(T* p, V v) {
    std::memcpy(p, &v, sizeof(V));
}

// Every lane set to s. `s - 0` is s for every s (unlike `0 + s`, which turns -0.0 into +0.0), so GCC
// folds it to a bare broadcast, usually as an embedded {1toN} memory operand of the FMA.
template <typename V, typename T>
inline V broadcast(T s) {
    return s - V{};
}

// Shuffle masks of one transpose stage (see transpose): lane l of the low/high output row.
template <typename T, int H>
struct TransposeMasks {
    static constexpr int L = Vec<T>::lanes;
    typename Vec<T>::int_t lo[L], hi[L];
    constexpr TransposeMasks() : lo(), hi() {
        for (int l = 0; l < L; ++l) {
            lo[l] = (l & H) ? L + l - H : l;
            hi[l] = (l & H) ? L + l : l + H;
        }
    }
};

// One stage: swap the off-diagonal H x H blocks of every 2H x 2H block, then the next stage.
template <typename T, int H>
inline void transpose_stage(typename Vec<T>::type* r) {
    using V = typename Vec<T>::type;
    using I = typename Vec<T>::itype;
    constexpr int L = Vec<T>::lanes;
    static constexpr TransposeMasks<T, H> m{};
    const I lo = load<I>(m.lo), hi = load<I>(m.hi);
#pragma GCC unroll 16
    for (int i = 0; i < L; ++i) {
        if (i & H) continue;
        V a = r[i], b = r[i + H];
        r[i] = __builtin_shuffle(a, b, lo);
        r[i + H] = __builtin_shuffle(a, b, hi);
    }
    if constexpr (H > 1) transpose_stage<T, H / 2>(r);
}

// Lanes [S, L) of lo followed by lanes [0, S) of hi: the vector that starts S elements into the two
// consecutive vectors lo, hi — an unaligned load done in registers (one valignd under AVX-512), which
// on this class of core costs far less than a load that straddles two cache lines.
template <int S, typename T>
inline typename Vec<T>::type shift_lanes(typename Vec<T>::type lo, typename Vec<T>::type hi) {
    using I = typename Vec<T>::itype;
    constexpr int L = Vec<T>::lanes;
    if constexpr (S == 0) {
        return lo;
    } else {
        I idx;
        for (int l = 0; l < L; ++l) idx[l] = l + S;
        return __builtin_shuffle(lo, hi, idx);
    }
}

// s[c] := the elements m·u + c, u < lanes, of the m·lanes elements in v[0..m), for c < m (m = 1, 2, 4 or
// 8): each pair of vectors split into its even and odd elements by two-source shuffles, then the evens
// and the odds deinterleaved by m/2 the same way.
template <typename T, int m>
inline void deinterleave(const typename Vec<T>::type* v, typename Vec<T>::type* s) {
    using V = typename Vec<T>::type;
    using I = typename Vec<T>::itype;
    static_assert(m == 1 || m == 2 || m == 4 || m == 8, "strides 1, 2, 4 and 8");
    if constexpr (m == 1) {
        s[0] = v[0];
    } else {
        I even, odd;
        for (int l = 0; l < Vec<T>::lanes; ++l) even[l] = 2 * l, odd[l] = 2 * l + 1;
        V e[m / 2], o[m / 2], se[m / 2], so[m / 2];
        for (int i = 0; i < m / 2; ++i)
            e[i] = __builtin_shuffle(v[2 * i], v[2 * i + 1], even), o[i] = __builtin_shuffle(v[2 * i], v[2 * i + 1], odd);
        deinterleave<T, m / 2>(e, se);
        deinterleave<T, m / 2>(o, so);
        for (int c = 0; c < m / 2; ++c) s[2 * c] = se[c], s[2 * c + 1] = so[c];
    }
}

// s[c] := the elements p[m·u + c], u < lanes, for c < m: m consecutive vectors, deinterleaved.
template <typename T, int m>
inline void load_strided(const T* p, typename Vec<T>::type* s) {
    using V = typename Vec<T>::type;
    V v[m];
    for (int k = 0; k < m; ++k) v[k] = load<V>(p + k * Vec<T>::lanes);
    deinterleave<T, m>(v, s);
}

// The first n elements of p (n <= 0: none; n >= lanes: a whole vector) in the first lanes, zeros after,
// reading nothing past p + n: a masked load where the ISA has one.
template <typename T>
inline typename Vec<T>::type load_first(const T* p, long n) {
    using V = typename Vec<T>::type;
    if (n >= Vec<T>::lanes) return load<V>(p);
    if (n <= 0) return V{};
#if defined(__AVX512F__)
    if constexpr (sizeof(T) == 4) return (V)_mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1), p);
    else return (V)_mm512_maskz_loadu_pd((__mmask8)((1u << n) - 1), p);
#elif defined(__AVX2__)
    using I = typename Vec<T>::itype;
    I lane{}, mask;
    for (int l = 0; l < Vec<T>::lanes; ++l) lane[l] = l;
    mask = lane < (typename Vec<T>::int_t)n;
    if constexpr (sizeof(T) == 4) return (V)_mm256_maskload_ps(p, (__m256i)mask);
    else return (V)_mm256_maskload_pd(p, (__m256i)mask);
#else
    alignas(64) T part[Vec<T>::lanes] = {};
    if (n > 0) std::memcpy(part, p, n * sizeof(T));
    return load<V>(part);
#endif
}

// p[0:n) = the first n lanes of v (n <= lanes): a masked store where the ISA has one, since a
// variable-length copy per vector costs more than the transform it stores.
template <typename T>
inline void store_first(T* p, typename Vec<T>::type v, long n) {
    if (n >= Vec<T>::lanes) return store(p, v);
#if defined(__AVX512F__)
    if constexpr (sizeof(T) == 4) _mm512_mask_storeu_ps(p, (__mmask16)((1u << n) - 1), (__m512)v);
    else _mm512_mask_storeu_pd(p, (__mmask8)((1u << n) - 1), (__m512d)v);
#elif defined(__AVX2__)
    using I = typename Vec<T>::itype;
    I lane{}, mask;
    for (int l = 0; l < Vec<T>::lanes; ++l) lane[l] = l;
    mask = lane < (typename Vec<T>::int_t)n;
    if constexpr (sizeof(T) == 4) _mm256_maskstore_ps(p, (__m256i)mask, (__m256)v);
    else _mm256_maskstore_pd(p, (__m256i)mask, (__m256d)v);
#else
    for (long l = 0; l < n; ++l) p[l] = v[l];
#endif
}

// v[0..m) := the m·lanes elements whose element m·u + c is s[c] lane u (m = 1, 2, 4 or 8): deinterleave's
// inverse, the even and the odd s interleaved by m/2, then zipped in pairs.
template <typename T, int m>
inline void interleave(const typename Vec<T>::type* s, typename Vec<T>::type* v) {
    using V = typename Vec<T>::type;
    using I = typename Vec<T>::itype;
    constexpr int L = Vec<T>::lanes;
    static_assert(m == 1 || m == 2 || m == 4 || m == 8, "strides 1, 2, 4 and 8");
    if constexpr (m == 1) {
        v[0] = s[0];
    } else {
        I lo, hi;  // the zip of the first (second) halves of two vectors
        for (int l = 0; l < L; ++l) lo[l] = (l % 2 ? L : 0) + l / 2, hi[l] = lo[l] + L / 2;
        V se[m / 2], so[m / 2], e[m / 2], o[m / 2];
        for (int c = 0; c < m / 2; ++c) se[c] = s[2 * c], so[c] = s[2 * c + 1];
        interleave<T, m / 2>(se, e);
        interleave<T, m / 2>(so, o);
        for (int i = 0; i < m / 2; ++i)
            v[2 * i] = __builtin_shuffle(e[i], o[i], lo), v[2 * i + 1] = __builtin_shuffle(e[i], o[i], hi);
    }
}

// p[m·u + c] := s[c] lane u, for c < m, u < n <= lanes: interleaved by shuffles and stored whole (the
// last vectors masked when n < lanes).
template <typename T, int m>
inline void store_interleaved(T* p, const typename Vec<T>::type* s, long n = Vec<T>::lanes) {
    constexpr int L = Vec<T>::lanes;
    typename Vec<T>::type v[m];
    interleave<T, m>(s, v);
    for (int k = 0; k < m && m * n > k * L; ++k) store_first<T>(p + k * L, v[k], m * n - k * L);
}

// v[r] = the first `cols` elements of row r of src (row stride ld) for r < rows, zero everywhere else
// (rows, cols <= L): an L x L block for transpose(), read without touching anything past it.
template <typename T>
inline void load_block(const T* src, long ld, long rows, long cols, typename Vec<T>::type* v) {
    using V = typename Vec<T>::type;
    constexpr int L = Vec<T>::lanes;
    if (rows >= L && cols == L) {  // the whole block: unrolled, so that v stays in registers
#pragma GCC unroll 16
        for (int r = 0; r < L; ++r) v[r] = load<V>(src + r * ld);
        return;
    }
    for (int r = 0; r < L; ++r) {
        if (r >= rows) {
            v[r] = V{};
        } else if (cols == L) {
            v[r] = load<V>(src + r * ld);
        } else {
            alignas(64) T part[L] = {};
            std::memcpy(part, src + r * ld, cols * sizeof(T));
            v[r] = load<V>(part);
        }
    }
}

// r[0:L) := its transpose, for L = lanes rows of L lanes: log2(L) butterfly stages of two-source
// shuffles (vpermt2ps under AVX-512), L * log2(L) of them in all.
template <typename T>
inline void transpose(typename Vec<T>::type* r) {
    if constexpr (Vec<T>::lanes > 1) transpose_stage<T, Vec<T>::lanes / 2>(r);
}

// Lane j of the result := the sum of r[j]'s lanes, for L = lanes vectors r (left transposed).
template <typename T>
inline typename Vec<T>::type sum_lanes(typename Vec<T>::type* r) {
    transpose<T>(r);
    typename Vec<T>::type sum = r[0];
    for (int i = 1; i < Vec<T>::lanes; ++i) sum += r[i];
    return sum;
}

// dst[0:n) = src[0:n) (bytes), stored around the caches (non-temporal stores) from dst's first vector
// boundary on. For an output far larger than the caches an ordinary store first reads each line in
// (read-for-ownership), which costs as much memory traffic as the write itself. The stores are weakly
// ordered: the writing thread calls stream_fence() before anyone else reads dst.
inline void stream_copy(void* dst, const void* src, size_t n) {
#if defined(__SSE2__)
    char* d = static_cast<char*>(dst);
    const char* s = static_cast<const char*>(src);
    const size_t head = std::min(n, (size_t)(-(uintptr_t)d & (kVectorBytes - 1)));
    std::memcpy(d, s, head);
    d += head, s += head, n -= head;
    for (; n >= (size_t)kVectorBytes; n -= kVectorBytes, d += kVectorBytes, s += kVectorBytes) {
#if defined(__AVX512F__)
        _mm512_stream_si512(reinterpret_cast<__m512i*>(d), _mm512_loadu_si512(s));
#elif defined(__AVX__)
        _mm256_stream_si256(reinterpret_cast<__m256i*>(d), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s)));
#else
        _mm_stream_si128(reinterpret_cast<__m128i*>(d), _mm_loadu_si128(reinterpret_cast<const __m128i*>(s)));
#endif
    }
    std::memcpy(d, s, n);
#else
    std::memcpy(dst, src, n);
#endif
}

// A register tile's accumulators set to zero (unrolled, so that they stay in registers).
template <typename V, int MR, int NV>
inline void zero_tile(V (&acc)[MR][NV]) {
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
        for (int j = 0; j < NV; ++j) acc[i][j] = V{};
}

inline void stream_fence() {
#if defined(__SSE2__)
    _mm_sfence();
#endif
}

}  // namespace fastconv
