// dispatch.cpp — CPU detection and the loading of the kernel library of one ISA level (see dispatch.h).
#include "dispatch.h"

#include <dlfcn.h>
#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <map>
#include <mutex>
#include <stdexcept>

namespace fastconv::dispatch {
namespace {

// Whether the CPU (and the OS, which must save the wider registers) runs level `isa`.
bool cpu_runs(const std::string& isa) {
#if defined(__x86_64__)
    __builtin_cpu_init();   // the levels of build_flags.py; libgcc also checks that the OS saves the registers
    if (isa == "avx2") return __builtin_cpu_supports("x86-64-v3");
    if (isa == "avx512") return __builtin_cpu_supports("x86-64-v4");
#endif
    return isa == isa_levels().front();  // the baseline runs everywhere
}

// Directory of the shared object this code was linked into: the kernel libraries lie beside it.
std::string own_directory() {
    Dl_info info{};
    if (!dladdr(reinterpret_cast<void*>(&own_directory), &info) || !info.dli_fname)
        throw std::runtime_error("fastconv: cannot locate its own library (dladdr failed)");
    std::string path = info.dli_fname;
    const auto slash = path.rfind('/');
    return slash == std::string::npos ? "." : path.substr(0, slash);
}

const KernelTable* load_library(const std::string& path) {
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle) throw std::runtime_error(std::string("fastconv: cannot load kernels: ") + dlerror());
    auto entry = reinterpret_cast<const KernelTable* (*)()>(dlsym(handle, "fastconv_kernel_table"));
    if (!entry) throw std::runtime_error("fastconv: " + path + " exports no fastconv_kernel_table");
    const KernelTable* table = entry();
    if (table->version != kKernelTableVersion)
        throw std::runtime_error("fastconv: " + path + " was built for another version of fastconv");
    return table;
}

std::mutex g_mutex;                                // guards g_loaded and switches of g_active
std::map<std::string, const KernelTable*> g_loaded;  // by library path; libraries are never unloaded
std::atomic<const KernelTable*> g_active{nullptr};
std::atomic<int> g_threads{0};  // 0: the kernels' own default
std::atomic<bool> g_forked{false};
std::atomic<bool (*)()> g_poll{nullptr};

// In a child of fork() the OpenMP runtime still believes in the parent's worker threads, which the
// child does not have: its first parallel region would wait for them forever. So, as NumPy's BLAS
// libraries do, a forked child runs every kernel on its own thread (a team of one never touches the
// pool), whatever the thread bound asks for later.
void after_fork_in_child() {
    g_forked.store(true);
    if (const KernelTable* t = g_active.load()) t->set_num_threads(1);
}

const KernelTable* load_isa(const std::string& isa) {
    const std::string path = own_directory() + "/libfastconv_" + isa + ".so";
    auto it = g_loaded.find(path);
    if (it == g_loaded.end()) it = g_loaded.emplace(path, load_library(path)).first;
    return it->second;
}

void activate(const KernelTable* table) {
    if (g_forked.load())
        table->set_num_threads(1);
    else if (int n = g_threads.load())
        table->set_num_threads(n);
    table->set_poll(g_poll.load());
    g_active.store(table);
}

// The level to start with: the best the CPU runs, capped by FASTCONV_ISA.
std::string chosen_isa() {
    const auto& levels = isa_levels();
    auto cap = levels.end();
    if (const char* env = std::getenv("FASTCONV_ISA"); env && *env) {
        cap = std::find(levels.begin(), levels.end(), env);
        if (cap == levels.end()) {
            std::string names;
            for (const auto& l : levels) names += (names.empty() ? "" : ", ") + l;
            throw std::invalid_argument("FASTCONV_ISA=" + std::string(env) + ": expected one of " + names);
        }
        ++cap;
    }
    std::string best = levels.front();
    for (auto l = levels.begin(); l != cap; ++l)
        if (cpu_runs(*l)) best = *l;
    return best;
}

}  // namespace

const std::vector<std::string>& isa_levels() {
#if defined(__x86_64__)
    static const std::vector<std::string> levels{"sse2", "avx2", "avx512"};
#elif defined(__aarch64__)
    static const std::vector<std::string> levels{"neon"};
#else
    static const std::vector<std::string> levels{"generic"};
#endif
    return levels;
}

std::vector<std::string> supported_isas() {
    std::vector<std::string> out;
    for (const auto& l : isa_levels())
        if (cpu_runs(l)) out.push_back(l);
    return out;
}

const KernelTable& kernels() {
    if (const KernelTable* t = g_active.load()) return *t;
    std::lock_guard<std::mutex> lock(g_mutex);
    if (!g_active.load()) {
        activate(load_isa(chosen_isa()));
        pthread_atfork(nullptr, nullptr, after_fork_in_child);
    }
    return *g_active.load();
}

void use_isa(const std::string& isa) {
    const auto& levels = isa_levels();
    if (std::find(levels.begin(), levels.end(), isa) == levels.end() || !cpu_runs(isa))
        throw std::invalid_argument("isa '" + isa + "' is not a level this CPU runs");
    std::lock_guard<std::mutex> lock(g_mutex);
    activate(load_isa(isa));
}

void use_library(const std::string& path) {
    std::lock_guard<std::mutex> lock(g_mutex);
    auto it = g_loaded.find(path);
    if (it == g_loaded.end()) it = g_loaded.emplace(path, load_library(path)).first;
    activate(it->second);
}

void set_num_threads(int n) {
    g_threads.store(std::max(1, n));
    kernels().set_num_threads(g_forked.load() ? 1 : std::max(1, n));
}

int get_num_threads() { return kernels().get_num_threads(); }

void set_poll(bool (*poll)()) {
    g_poll.store(poll);
    kernels().set_poll(poll);
}

}  // namespace fastconv::dispatch
