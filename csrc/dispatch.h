// dispatch.h — the front of the kernels: which ISA build runs, chosen once from the CPU.
//
// kernels() loads, on first use, the kernel library of the best ISA level that both the CPU and the
// FASTCONV_ISA cap allow, from the directory of the library holding this code, and returns its table.
// The bindings and the C ABI reach every kernel through it.
#pragma once

#include <string>
#include <vector>

#include "kernels.h"

namespace fastconv::dispatch {

// The active table. Throws std::invalid_argument for a bad FASTCONV_ISA, std::runtime_error when no
// kernel library can be loaded.
const KernelTable& kernels();

// This build's ISA levels for the machine's architecture, lowest first, and those the CPU runs.
const std::vector<std::string>& isa_levels();
std::vector<std::string> supported_isas();

// Make `isa` (a level the CPU runs) the active one, or load the kernel library at `path` and make it
// active: for tests that run every level in one process and for benchmarks that compare two builds.
void use_isa(const std::string& isa);
void use_library(const std::string& path);

// The thread bound of every kernel, kept across switches of the active table; 1 in a forked child.
void set_num_threads(int n);
int get_num_threads();

// The poll every kernel library asks whether to stop a long kernel early (Stop in parallel.h); kept
// across switches of the active table. Only the Python bindings install one.
void set_poll(bool (*poll)());

}  // namespace fastconv::dispatch
