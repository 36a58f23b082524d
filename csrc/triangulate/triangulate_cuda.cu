// CUDA implementation of triangulate.h: one thread per point, on the caller's stream.
//
// Shared P: each block stages the V matrices and their camera centres in shared memory once; per-item P:
// each thread reads its own matrices from global memory and derives the centres itself.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "common/cuda_runtime.h"
#include "triangulate/triangulate.h"
#include "triangulate/triangulate_point.h"

namespace mvlift {
namespace {

constexpr int kThreads = 128;
// Shared-memory budget for the staged cameras; larger V falls back to reading P from global memory.
constexpr size_t kMaxSharedBytes = 32 * 1024;

template <typename T, bool kStaged>
__global__ void __launch_bounds__(kThreads) triangulate_kernel(TriangulateArgs<T> a) {
  extern __shared__ __align__(16) unsigned char smem[];
  T* sP = reinterpret_cast<T*>(smem);
  tri::Camera<T>* sCam = reinterpret_cast<tri::Camera<T>*>(sP + 12 * a.V);
  if (kStaged) {
    for (int64_t k = threadIdx.x; k < 12 * a.V; k += blockDim.x) sP[k] = a.P[k];
    __syncthreads();
    for (int64_t v = threadIdx.x; v < a.V; v += blockDim.x) sCam[v] = tri::camera_of(sP + 12 * v);
    __syncthreads();
  }
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= a.B * a.M) return;
  const int64_t b = i / a.M, m = i - b * a.M;
  const int64_t base = b * a.V * a.M + m;
  const tri::Observations<T> obs{a.x + 2 * base, 2 * a.M, a.w ? a.w + base : nullptr, a.M};
  if (kStaged) {
    tri::triangulate_point(tri::PrecomputedCameras<T>{sP, sCam}, obs, a.V, a.refine_iters, a.X + 3 * i, a.rms + i,
                           a.nvalid + i, a.flags + i);
  } else {
    const T* P = a.shared_P ? a.P : a.P + 12 * a.V * b;
    tri::triangulate_point(tri::RawCameras<T>{P}, obs, a.V, a.refine_iters, a.X + 3 * i, a.rms + i, a.nvalid + i,
                           a.flags + i);
  }
}

}  // namespace

template <typename T>
void triangulate_cuda(const TriangulateArgs<T>& a, int device, uintptr_t stream) {
  const int64_t n = a.B * a.M;
  if (n == 0) return;
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  if (blocks > 0x7fffffff)
    throw std::invalid_argument("triangulate_cuda: " + std::to_string(n) + " points need " + std::to_string(blocks) +
                                " blocks of " + std::to_string(kThreads) +
                                " threads, more than one launch takes (2^31 - 1); split the batch");
  const CudaDeviceGuard guard(device, "triangulate_cuda");
  const cudaStream_t s = reinterpret_cast<cudaStream_t>(stream);
  const size_t staged_bytes = static_cast<size_t>(a.V) * (12 * sizeof(T) + sizeof(tri::Camera<T>));
  if (a.shared_P && staged_bytes <= kMaxSharedBytes) {
    triangulate_kernel<T, true><<<static_cast<unsigned>(blocks), kThreads, staged_bytes, s>>>(a);
  } else {
    triangulate_kernel<T, false><<<static_cast<unsigned>(blocks), kThreads, 0, s>>>(a);
  }
  check_cuda(cudaGetLastError(), "triangulate_cuda");
}

template void triangulate_cuda<float>(const TriangulateArgs<float>&, int, uintptr_t);
template void triangulate_cuda<double>(const TriangulateArgs<double>&, int, uintptr_t);

}  // namespace mvlift
