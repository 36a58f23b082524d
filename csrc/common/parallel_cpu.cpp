#include <algorithm>
#include <atomic>
#include <thread>
#include <vector>

#include "common/parallel.h"

namespace mvlift {
namespace {
std::atomic<int> g_num_threads{0};
}

int get_num_threads() {
  const int n = g_num_threads.load();
  if (n > 0) return n;
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

void set_num_threads(int n) { g_num_threads.store(n > 0 ? n : 0); }

void parallel_for_erased(int64_t n, int64_t grain, RangeFn fn, void* ctx) {
  if (n <= 0) return;
  const int64_t max_threads = std::max<int64_t>(1, get_num_threads());
  const int64_t threads = std::min<int64_t>(max_threads, std::max<int64_t>(1, n / std::max<int64_t>(grain, 1)));
  if (threads <= 1) {
    fn(ctx, 0, n);
    return;
  }
  const int64_t chunk = (n + threads - 1) / threads;
  std::vector<std::thread> pool;
  pool.reserve(threads - 1);
  for (int64_t t = 1; t < threads; ++t) {
    const int64_t b = t * chunk, e = std::min(n, b + chunk);
    if (b < e) pool.emplace_back([fn, ctx, b, e] { fn(ctx, b, e); });
  }
  fn(ctx, 0, std::min(n, chunk));
  for (auto& th : pool) th.join();
}

}  // namespace mvlift
