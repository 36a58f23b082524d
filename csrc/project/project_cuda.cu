#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "common/cuda_runtime.h"
#include "project/project.h"

namespace mvlift {

template <typename T>
__global__ void project_points_kernel(const T* __restrict__ X, const T* __restrict__ P, int64_t n, bool shared_P,
                                      T* __restrict__ out, T* __restrict__ depth) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  project_one(X + 3 * i, P + (shared_P ? 0 : 12 * i), out + 2 * i, depth + i);
}

template <typename T>
void project_points_cuda(const T* X, const T* P, int64_t n, bool shared_P, T* out, T* depth, int device,
                         uintptr_t stream) {
  if (n == 0) return;
  constexpr int threads = 256;
  const int64_t blocks = (n + threads - 1) / threads;
  if (blocks > 0x7fffffff)
    throw std::invalid_argument("project_points_cuda: " + std::to_string(n) + " points need " +
                                std::to_string(blocks) + " blocks, more than one launch takes (2^31 - 1)");
  const CudaDeviceGuard guard(device, "project_points_cuda");
  project_points_kernel<T><<<static_cast<unsigned>(blocks), threads, 0, reinterpret_cast<cudaStream_t>(stream)>>>(
      X, P, n, shared_P, out, depth);
  check_cuda(cudaGetLastError(), "project_points_cuda");
}

template void project_points_cuda<float>(const float*, const float*, int64_t, bool, float*, float*, int, uintptr_t);
template void project_points_cuda<double>(const double*, const double*, int64_t, bool, double*, double*, int,
                                          uintptr_t);

}  // namespace mvlift
