// simd.h — the vector type every kernel computes with, chosen once at compile time.
//
// GCC vector extensions (`__attribute__((vector_size(N)))`) rather than intrinsics: the same source
// gives AVX-512, AVX2 or SSE2 code, and `a * b + c` on these types contracts to an FMA instruction
// wherever the target has one (GCC contracts by default in C++). N is 64 bytes under __AVX512F__,
// 32 under __AVX2__, 16 otherwise (FASTCONV_PORTABLE builds: plain x86-64 has SSE2).
#pragma once

#include <cstdint>
#include <cstring>

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
#else
constexpr int kVectorBytes = 16;
constexpr const char* kSimdName = "sse2";
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

// Every lane set to s (a vector-scalar subtraction from zero would also do; this reads clearer).
template <typename V, typename T>
inline V broadcast(T s) {
    V v = {};
    return v + s;
}

}  // namespace fastconv
