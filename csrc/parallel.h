// parallel.h — the thread bound shared by every kernel, and small helpers for OpenMP task loops.
//
// The bound lives in one global (not omp_set_num_threads, which is per calling thread) and every
// parallel region passes it in a num_threads() clause, so fc.set_num_threads works no matter which
// Python thread later calls a kernel.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <memory>
#include <new>
#include <utility>

#include "scratch.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace fastconv {

// 0 until set: then OpenMP's own default (OMP_NUM_THREADS or the core count) applies.
inline std::atomic<int> g_num_threads{0};

// Current bound (>= 1).
inline int get_num_threads() {
    int n = g_num_threads.load(std::memory_order_relaxed);
#ifdef _OPENMP
    if (n < 1) n = omp_get_max_threads();
#endif
    return std::max(1, n);
}

inline void set_num_threads(int n) { g_num_threads.store(std::max(1, n), std::memory_order_relaxed); }

// Threads worth starting for `tasks` independent tasks: never more threads than tasks.
inline int threads_for(long tasks) {
    return (int)std::max(1L, std::min<long>(tasks, get_num_threads()));
}

// Threads for `tasks` tasks that together do about `work` flops: below ~2 Mflop per thread (tens of
// microseconds) the fork/join costs more than it saves — and on a loaded machine a second thread may
// wait a whole scheduler time slice (milliseconds) before it runs — so small calls stay on one thread.
constexpr double kWorkPerThread = 2e6;
inline int threads_for(long tasks, double work) {
    return (int)std::max(1L, std::min<long>(threads_for(tasks), (long)(work / kWorkPerThread)));
}

// The work of kernels bound by moving values rather than by arithmetic (copies, transposes, one or two
// passes of a few operations per value), in the flops of threads_for: per value moved they take about as
// long as this many flops of a compute-bound kernel.
constexpr double kWorkPerMovedValue = 20;
inline double moved_work(double values) { return kWorkPerMovedValue * values; }

// The calling thread's number inside a parallel region (0 outside, or without OpenMP).
inline int omp_thread() {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

// --- Stopping a long kernel early (Ctrl-C) ---------------------------------------------------------
// The front may install a poll function (KernelTable::set_poll) that says whether the caller wants the
// running kernel to stop: the Python bindings check for a pending signal there. A kernel makes one
// Stop on its calling thread and asks it between tasks of its outermost loops; only the calling thread
// (thread 0 of a region, or the thread itself outside one) runs the poll, at most once per
// kPollInterval, so kernels shorter than that never poll. A task can be short next to a clock read (a
// 16x16 pool plane), so the clock is read every `stride_` tasks, a stride that doubles while reads come
// less than kClockInterval apart and halves when they come further apart (the tasks of one loop are
// alike, so it settles at about one read per kClockInterval of thread 0's work). A stopped kernel
// skips its remaining tasks and leaves its output unspecified: the front, which knows it asked to
// stop, raises instead of returning it.
using PollFn = bool (*)();
inline std::atomic<PollFn> g_poll{nullptr};
inline void set_poll(PollFn poll) { g_poll.store(poll); }

class Stop {
  public:
    // Whether to skip the remaining work; any thread of the kernel may ask.
    bool operator()() {
        if (poll_ && omp_thread() == 0 && --countdown_ <= 0 && due() && poll_())
            stopped_.store(true, std::memory_order_relaxed);
        return stopped_.load(std::memory_order_relaxed);
    }

  private:
    using Clock = std::chrono::steady_clock;
    static constexpr auto kPollInterval = std::chrono::milliseconds(15);
    static constexpr auto kClockInterval = std::chrono::microseconds(500);
    bool due() {
        const auto now = Clock::now();
        stride_ = now - last_ < kClockInterval ? std::min(2 * stride_, 1L << 20) : std::max(stride_ / 2, 1L);
        countdown_ = stride_, last_ = now;
        if (now < next_) return false;
        next_ = now + kPollInterval;
        return true;
    }
    const PollFn poll_ = g_poll.load();
    Clock::time_point last_ = Clock::now(), next_ = last_ + kPollInterval;
    long stride_ = 1, countdown_ = 1;
    std::atomic<bool> stopped_{false};
};

// ceil(a / b) for a >= 0, b > 0.
inline long ceil_div(long a, long b) { return (a + b - 1) / b; }
inline long round_up(long a, long b) { return ceil_div(a, b) * b; }

// A 64-byte-aligned scratch array (cache-line and vector aligned); uninitialised, owns its memory, which
// comes from and goes back to the scratch cache (scratch.h).
template <typename T>
class Buffer {
  public:
    Buffer() = default;
    explicit Buffer(size_t n) { resize(n); }
    Buffer(Buffer&& o) noexcept : p_(o.p_), n_(o.n_), bytes_(o.bytes_) { o.p_ = nullptr, o.n_ = o.bytes_ = 0; }
    Buffer& operator=(Buffer&& o) noexcept {
        std::swap(p_, o.p_), std::swap(n_, o.n_), std::swap(bytes_, o.bytes_);
        return *this;
    }
    ~Buffer() { release(); }
    void resize(size_t n) {
        if (n <= n_) return;
        if (n > ((size_t)1 << 60) / sizeof(T)) throw std::bad_alloc();
        size_t bytes = round_up((long)(n * sizeof(T)), 64);
        void* p = scratch_cache().acquire(bytes);
        release();
        p_ = static_cast<T*>(p);
        n_ = n;
        bytes_ = bytes;
    }
    T* data() { return p_; }
    const T* data() const { return p_; }

  private:
    void release() {
        if (p_) scratch_cache().release(p_, bytes_);
    }
    T* p_ = nullptr;
    size_t n_ = 0, bytes_ = 0;
};

// Runs task(t, scratch) for every t in [0, ntasks) on threads_for(ntasks, work) threads, dynamically
// scheduled, `scratch` pointing at `size` elements private to the running thread; when the kernel is
// asked to stop (Stop), the remaining tasks are skipped. The workspace is allocated before the parallel
// region, so an allocation failure is an exception of the caller's thread.
template <typename T, typename Task>
void parallel_tasks(long ntasks, double work, long size, const Task& task) {
    const int nt = threads_for(ntasks, work);
    Buffer<T> ws(nt * size);
    Stop stop;
#pragma omp parallel for schedule(dynamic) num_threads(nt)
    for (long t = 0; t < ntasks; ++t) {
        if (stop()) continue;
        task(t, ws.data() + omp_thread() * size);
    }
}

// Scratch for each thread of a parallel region, allocated before the region: an exception may not
// leave an OpenMP region (a failed allocation inside one would terminate the process), so every
// allocation that can fail happens on the calling thread, where it surfaces as std::bad_alloc.
template <typename T>
class PerThread {
  public:
    PerThread(int threads, size_t n) : n_(n), buf_(checked_product(threads, n)) {}
    T* get() { return buf_.data() + (size_t)omp_thread() * n_; }

  private:
    static size_t checked_product(int threads, size_t n) {
        size_t total;
        if (__builtin_mul_overflow((size_t)threads, n, &total) || total > ((size_t)1 << 60) / sizeof(T))
            throw std::bad_alloc();
        return total;
    }
    size_t n_;
    Buffer<T> buf_;
};

}  // namespace fastconv
