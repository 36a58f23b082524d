#include "common/parallel.h"

#include <atomic>

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

}  // namespace mvlift
