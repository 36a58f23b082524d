#include "project/project.h"

#include "common/parallel.h"

namespace mvlift {

template <typename T>
void project_points_cpu(const T* X, const T* P, int64_t n, bool shared_P, T* out, T* depth) {
  parallel_for(n, 1 << 15, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      project_one(X + 3 * i, P + (shared_P ? 0 : 12 * i), out + 2 * i, depth + i);
    }
  });
}

template void project_points_cpu<float>(const float*, const float*, int64_t, bool, float*, float*);
template void project_points_cpu<double>(const double*, const double*, int64_t, bool, double*, double*);

}  // namespace mvlift
