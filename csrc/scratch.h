// scratch.h — where Buffer gets its memory: large blocks are kept for the next kernel call.
//
// glibc maps every allocation above its mmap threshold (at most 32 MiB) afresh and unmaps it on free, and
// may trim smaller freed blocks off the heap's top, so a kernel with large scratch faults all of it in
// again on every call: for a 3x3 layer with 512 channels the Winograd-transformed weights (38 MB) took as
// long to fault in as its GEMMs took to run (docs/performance.md). Blocks between kKeepMin and kKeepMax
// bytes are therefore kept after use, at most kSlots of them (the largest), and handed to the next request
// that fits. A thread that finds the cache busy allocates and frees directly: no kernel waits on it, and a
// child forked while another thread held it just bypasses it. FASTCONV_SCRATCH_CACHE=0 turns it off.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>

namespace fastconv {

class ScratchCache {
  public:
    static constexpr size_t kKeepMin = (size_t)4 << 20, kKeepMax = (size_t)256 << 20;
    static constexpr int kSlots = 4;

    // A 64-byte-aligned block of at least `bytes` (a multiple of 64); `bytes` becomes its real size.
    void* acquire(size_t& bytes) {
        if (keeps(bytes) && lock()) {
            int best = -1;
            for (int i = 0; i < kSlots; ++i)
                if (slots_[i].p && slots_[i].bytes >= bytes && (best < 0 || slots_[i].bytes < slots_[best].bytes))
                    best = i;
            void* p = nullptr;
            if (best >= 0) {
                p = slots_[best].p;
                bytes = slots_[best].bytes;
                slots_[best] = {};
            }
            unlock();
            if (p) return p;
        }
        void* p = std::aligned_alloc(64, bytes);
        if (!p) throw std::bad_alloc();
        return p;
    }

    // Keeps the block in a free slot or in place of a smaller one (which is freed), else frees it.
    void release(void* p, size_t bytes) {
        if (keeps(bytes) && lock()) {
            int slot = 0;
            for (int i = 1; i < kSlots; ++i)
                if (!slots_[i].p || (slots_[slot].p && slots_[i].bytes < slots_[slot].bytes)) slot = i;
            Block out = slots_[slot];
            if (!out.p || out.bytes < bytes) {
                slots_[slot] = {p, bytes};
                p = out.p;
            }
            unlock();
        }
        std::free(p);
    }

  private:
    struct Block {
        void* p = nullptr;
        size_t bytes = 0;
    };
    bool keeps(size_t bytes) const { return enabled_ && bytes >= kKeepMin && bytes <= kKeepMax; }
    bool lock() { return !busy_.exchange(true, std::memory_order_acquire); }
    void unlock() { busy_.store(false, std::memory_order_release); }
    static bool enabled_from_env() {
        const char* v = std::getenv("FASTCONV_SCRATCH_CACHE");
        return !(v && std::strcmp(v, "0") == 0);
    }

    const bool enabled_ = enabled_from_env();
    std::atomic<bool> busy_{false};
    Block slots_[kSlots];
};

// Never destroyed: its blocks go back to the system with the process, and a kernel still running in
// another thread while the process exits never returns a block to a destroyed cache.
inline ScratchCache& scratch_cache() {
    static ScratchCache* cache = new ScratchCache;
    return *cache;
}

}  // namespace fastconv
