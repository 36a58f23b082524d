// Minimal CPU parallel-for over an index range, shared by every CPU kernel in csrc/.
#pragma once
#include <algorithm>
#include <cstdint>
#include <thread>
#include <vector>

namespace mvlift {

// Number of worker threads: hardware concurrency, at least 1; overridden by set_num_threads().
int get_num_threads();
void set_num_threads(int n);

// Calls fn(begin, end) on contiguous chunks of [0, n), in parallel when n >= grain.
template <typename Fn>
void parallel_for(int64_t n, int64_t grain, Fn&& fn) {
  if (n <= 0) return;
  const int64_t max_threads = std::max<int64_t>(1, get_num_threads());
  const int64_t threads = std::min<int64_t>(max_threads, std::max<int64_t>(1, n / std::max<int64_t>(grain, 1)));
  if (threads <= 1) {
    fn(int64_t{0}, n);
    return;
  }
  const int64_t chunk = (n + threads - 1) / threads;
  std::vector<std::thread> pool;
  pool.reserve(threads - 1);
  for (int64_t t = 1; t < threads; ++t) {
    const int64_t b = t * chunk, e = std::min(n, b + chunk);
    if (b < e) pool.emplace_back([&fn, b, e] { fn(b, e); });
  }
  fn(int64_t{0}, std::min(n, chunk));
  for (auto& th : pool) th.join();
}

}  // namespace mvlift
