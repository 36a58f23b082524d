// Batched multi-view triangulation: contract of the native op (CPU and CUDA).
//
// Layout (all C-contiguous, checked by the binding; the Python wrapper mvlift.ops.triangulate builds it):
//   x       (B, V, M, 2)  observations of B*M points in V views, in the frame of P (pixels or normalized)
//   P       (Bp, V, 3, 4) projection matrices, Bp == 1 (shared by every point) or Bp == B (one set per b)
//   w       (B, V, M)     per-observation weights, or nullptr (every weight 1)
//   X       (B, M, 3)     output: triangulated points (world units of P); NaN when DEGENERATE
//   rms     (B, M)        output: weighted reprojection RMS, sqrt(sum_v w_v |x_v - proj_v(X)|^2 / sum_v w_v),
//                         in the units of x; NaN when DEGENERATE
//   nvalid  (B, M) int32  output: number of valid views
//   flags   (B, M) int32  output: bitmask of kDegenerate | kBehindCamera | kNotConverged (solver.h values)
// Point (b, m) reads x[b, :, m, :], w[b, :, m] and P[b or 0]; it writes row (b, m) of every output.
// Every output element is written, whatever the input values; no input is modified. n = B*M == 0 is a no-op.
//
// A view is valid for a point when its weight is finite and > 0, both coordinates are finite, and the left
// 3x3 block of its P has a finite non-zero determinant and its last column is finite. Invalid views are
// ignored entirely.
//
// Method, per point (float32 or float64 throughout, in the input's precision):
//  1. World normalisation (Hartley's, applied to the only 3D points known before solving: the centres C_v of
//     the valid cameras): c = mean C_v, s = RMS distance of the C_v to c. Unknown X = c + s X'.
//  2. DLT: each valid view gives the rows r1 = u P_2 - P_0 and r2 = v P_2 - P_1. Each row, rewritten for X',
//     is scaled so its first three entries are a unit vector: r . [X'; 1] is then the signed distance from X'
//     to a plane through the camera centre that contains the observed ray (normalised world units). This
//     replaces the usual per-image 2D normalisation (one point per view makes that degenerate) and makes the
//     DLT invariant to any per-axis scale and offset of the image coordinates (pixels vs normalized frame).
//  3. The homogeneous solution minimises sum_v w_v (d1_v^2 + d2_v^2) over unit [X'; w]: the eigenvector of the
//     smallest eigenvalue of the 4x4 normal matrix A^T W A, from a cyclic Jacobi eigen-solver (solver.h).
//  4. refine_iters Levenberg-Marquardt steps on sum_v w_v |x_v - proj_v(X)|^2 from the DLT point (3x3
//     damped normal equations H + lambda diag(H), solved by LDL^T; lambda starts at 1e-3, x0.1 after an
//     accepted step (floor 1e-12), x10 after a rejected one (cap 1e12); a step is accepted when the cost
//     does not rise by more than its rounding noise, 4 eps (cost + sqrt(cost sum_v w_v |x_v|^2)), and, if
//     the DLT point was in front of every valid camera, it stays in front of all of them).
//
// Flags (a point can carry several):
//   kDegenerate    X and rms are NaN: fewer than 2 valid views; valid camera centres coincide
//                  (s <= sqrt(eps) |c|); the rays are (nearly) one line (second-smallest eigenvalue
//                  <= 100 eps * largest); the point is at infinity (|w| <= sqrt(eps) |X'| for the unit
//                  eigenvector, i.e. farther than 1/sqrt(eps) camera spreads from c); or a non-finite result.
//   kBehindCamera  the final X has depth <= 0 in some valid view, depth = (P_2 . [X; 1]) sign(det P[:, :3]).
//   kNotConverged  refine_iters > 0 and the last proposed LM step was still longer than
//                  sqrt(eps) (1 + |X'|) in normalised units.
// eps = 2^-23 (float32) or 2^-52 (float64).
//
// CPU builds: on x86-64 the kernel exists twice, for the baseline instruction set and for AVX2 + FMA, and the
// best one the processor supports runs (common/cpu_isa.h; MVLIFT_CPU_ISA=baseline forces the other). Within one
// build, results do not depend on the thread count or on how points are batched; between the two builds they
// agree to rounding (FMA contraction), with the same flags.
#pragma once
#include <cstdint>

namespace mvlift {

template <typename T>
struct TriangulateArgs {
  const T* x;
  const T* P;
  const T* w;  // nullptr: unit weights
  int64_t B;
  int64_t V;
  int64_t M;
  bool shared_P;  // P has one set of V matrices (Bp == 1)
  int refine_iters;
  T* X;
  T* rms;
  int32_t* nvalid;
  int32_t* flags;
};

template <typename T>
void triangulate_cpu(const TriangulateArgs<T>& args);

#ifdef MVLIFT_WITH_CUDA
// Launches on `device` (made current for the launch: common/cuda_runtime.h) and the given CUDA stream of that
// device (torch's current stream); returns without waiting for the kernel.
template <typename T>
void triangulate_cuda(const TriangulateArgs<T>& args, int device, uintptr_t stream);
#endif

}  // namespace mvlift
