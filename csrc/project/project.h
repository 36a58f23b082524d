// Pinhole projection of a batch of 3D points: the native op that proves the build end to end.
//
// Contract (checked by the Python wrapper mvlift.ops.project_points before calling):
//   X   (N, 3)  world points, C-contiguous, float32 or float64
//   P   (M, 3, 4) projection matrices P = K [R | t], same dtype; M == 1 (shared) or M == N (per point)
//   out (N, 2)  pixels, same dtype, written in place: u = (P0 . X~) / (P2 . X~), v = (P1 . X~) / (P2 . X~)
//   depth (N,)  P2 . X~ (positive in front of the camera), written in place
// A point with depth exactly 0 (on the camera's principal plane) gives +-inf / NaN as IEEE division does.
#pragma once
#include <cstdint>

namespace mvlift {

template <typename T>
void project_points_cpu(const T* X, const T* P, int64_t n, bool shared_P, T* out, T* depth);

#ifdef MVLIFT_WITH_CUDA
// Launches on `device` (made current for the launch) and the given stream of that device.
template <typename T>
void project_points_cuda(const T* X, const T* P, int64_t n, bool shared_P, T* out, T* depth, int device,
                         uintptr_t stream);
#endif

// One point: shared by the CPU and CUDA implementations.
template <typename T>
#ifdef __CUDACC__
__host__ __device__
#endif
inline void project_one(const T* x, const T* p, T* uv, T* d) {
  const T X = x[0], Y = x[1], Z = x[2];
  const T a = p[0] * X + p[1] * Y + p[2] * Z + p[3];
  const T b = p[4] * X + p[5] * Y + p[6] * Z + p[7];
  const T c = p[8] * X + p[9] * Y + p[10] * Z + p[11];
  uv[0] = a / c;
  uv[1] = b / c;
  *d = c;
}

}  // namespace mvlift
