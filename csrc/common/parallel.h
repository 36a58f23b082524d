// Minimal CPU parallel-for over an index range, shared by every CPU kernel in csrc/.
//
// The threading itself (std::thread, std::vector) is compiled once, in parallel_cpu.cpp, behind a type-erased
// entry point: translation units built for a wider instruction set (the *_avx2.cpp kernels) then never emit
// their own copies of those library functions, which the linker could otherwise pick for baseline callers.
#pragma once
#include <cstdint>
#include <type_traits>

namespace mvlift {

// Number of worker threads: hardware concurrency, at least 1; overridden by set_num_threads().
int get_num_threads();
void set_num_threads(int n);

// Calls fn(ctx, begin, end) on contiguous chunks of [0, n), in parallel when n >= grain.
using RangeFn = void (*)(void* ctx, int64_t begin, int64_t end);
void parallel_for_erased(int64_t n, int64_t grain, RangeFn fn, void* ctx);

// Calls fn(begin, end) on contiguous chunks of [0, n), in parallel when n >= 2 * grain (at most
// get_num_threads() chunks, each at least grain long). fn must not throw.
template <typename Fn>
inline void parallel_for(int64_t n, int64_t grain, Fn&& fn) {
  using F = std::remove_reference_t<Fn>;
  parallel_for_erased(
      n, grain, [](void* ctx, int64_t b, int64_t e) { (*static_cast<F*>(ctx))(b, e); },
      const_cast<void*>(static_cast<const void*>(&fn)));
}

}  // namespace mvlift
