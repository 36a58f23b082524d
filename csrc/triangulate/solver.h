// Small fixed-size linear algebra for triangulation, shared verbatim by the CPU and CUDA kernels.
//
//   camera_of      centre and orientation sign of a 3x4 projection matrix (3x3 adjugate, no pivoting)
//   jacobi_eigen4  eigen-decomposition of symmetric 4x4 matrices by cyclic Jacobi rotations (L lanes)
//   ldlt_solve3    solve of a symmetric positive-definite 3x3 system by LDL^T (no square roots)
//
// Every index is a compile-time constant after inlining, so on the GPU the matrices live in registers.
#pragma once
#include "common/device.h"

namespace mvlift {
inline namespace MVLIFT_ISA_NAMESPACE {
namespace tri {

// Centre C (P [C; 1] = 0) and orientation of a finite projective camera P = [M | p4] (row-major 3x4).
// sign = sign(det M) (+1 for P = K [R | t] with a positive-diagonal K), or 0 when the camera is unusable
// (see camera_sign): such a view is ignored.
template <typename T>
struct Camera {
  T C[3];
  T sign;
};

// Sign of det(P[:, :3]) of a usable camera, or 0 when that block is singular, its determinant is not finite,
// or the last column of P is not finite.
template <typename T>
MVLIFT_HD inline T camera_sign(const T* p) {
  const T det = p[0] * (p[5] * p[10] - p[6] * p[9]) + p[1] * (p[6] * p[8] - p[4] * p[10]) +
                p[2] * (p[4] * p[9] - p[5] * p[8]);
  const bool ok = det != T(0) && hd_finite(det) && hd_finite(p[3]) && hd_finite(p[7]) && hd_finite(p[11]);
  return ok ? (det > T(0) ? T(1) : T(-1)) : T(0);
}

template <typename T>
MVLIFT_HD inline Camera<T> camera_of(const T* p) {
  // Rows m0, m1, m2 of M. M^-1 = [m1 x m2 | m2 x m0 | m0 x m1] / det (as columns), det = m0 . (m1 x m2).
  const T c0[3] = {p[5] * p[10] - p[6] * p[9], p[6] * p[8] - p[4] * p[10], p[4] * p[9] - p[5] * p[8]};
  const T c1[3] = {p[9] * p[2] - p[10] * p[1], p[10] * p[0] - p[8] * p[2], p[8] * p[1] - p[9] * p[0]};
  const T c2[3] = {p[1] * p[6] - p[2] * p[5], p[2] * p[4] - p[0] * p[6], p[0] * p[5] - p[1] * p[4]};
  const T det = p[0] * c0[0] + p[1] * c0[1] + p[2] * c0[2];
  Camera<T> cam;
  const T inv = T(-1) / det;
  for (int k = 0; k < 3; ++k) cam.C[k] = inv * (c0[k] * p[3] + c1[k] * p[7] + c2[k] * p[11]);
  cam.sign = camera_sign(p);
  return cam;
}

// Jacobi eigen-solver over L independent matrices in lock-step (a[i][j][lane]): the CPU runs L = 8 lanes so
// the compiler can vectorise across points and overlap the square-root/division latencies; a CUDA thread
// runs L = 1. Every lane follows the same instruction stream (selects, no per-lane branches).

// Only the upper triangle a[i][j], i <= j, is read or written; the strict lower triangle is unused.
// Lane loops: unrolled on the GPU (device pass only), marked free of loop-carried dependences for GCC.
#if defined(__CUDA_ARCH__)
#define MVLIFT_LANES _Pragma("unroll")
#elif defined(__GNUC__) && !defined(__clang__)
#define MVLIFT_LANES _Pragma("GCC ivdep")
#else
#define MVLIFT_LANES
#endif

// Rotates row/column k of the symmetric matrix against the pair (p, q): k is neither p nor q.
template <int k, int p, int q, int L, typename T>
MVLIFT_HD inline void jacobi_rotate_offdiag(T (&a)[4][4][L], const T (&c)[L], const T (&s)[L]) {
  constexpr int kp0 = k < p ? k : p, kp1 = k < p ? p : k;
  constexpr int kq0 = k < q ? k : q, kq1 = k < q ? q : k;
  MVLIFT_LANES
  for (int l = 0; l < L; ++l) {
    const T g = a[kp0][kp1][l], e = a[kq0][kq1][l];
    a[kp0][kp1][l] = c[l] * g - s[l] * e;
    a[kq0][kq1][l] = s[l] * g + c[l] * e;
  }
}

// Applies the rotation to row k of the eigenvector matrix (columns p and q).
template <int k, int p, int q, int L, typename T>
MVLIFT_HD inline void jacobi_rotate_vectors(T (&v)[4][4][L], const T (&c)[L], const T (&s)[L]) {
  MVLIFT_LANES
  for (int l = 0; l < L; ++l) {
    const T g = v[k][p][l], e = v[k][q][l];
    v[k][p][l] = c[l] * g - s[l] * e;
    v[k][q][l] = s[l] * g + c[l] * e;
  }
}

// One Jacobi rotation annihilating a[p][q] (p < q) in every lane; accumulates it into v (columns are
// eigenvectors). With h = a_qq - a_pp and r = sqrt(h^2 + 4 a_pq^2), the rotation angle phi (tan(2 phi) =
// 2 a_pq / h, the smaller root) has c = cos(phi) = (|h| + r) / sqrt(2 r (|h| + r)), s = sin(phi) =
// sgn(h) sqrt(2) a_pq / sqrt(r (|h| + r)), and t a_pq = tan(phi) a_pq = 2 sgn(h) a_pq^2 / (|h| + r): two
// square roots and one division, all of positive quantities (no cancellation). Lanes that are not active
// (converged), or whose |a_pq| <= Limits::tiny, are left unchanged.
template <int p, int q, int L, typename T>
MVLIFT_HD inline void jacobi_rotate(T (&a)[4][4][L], T (&v)[4][4][L], const bool (&active)[L]) {
  constexpr T kSqrt2 = T(1.4142135623730951);
  constexpr T kInvSqrt2 = T(0.70710678118654752);
  constexpr int k0 = (p != 0 && q != 0) ? 0 : (p != 1 && q != 1) ? 1 : 2;  // the two indices outside {p, q}
  constexpr int k1 = (q != 3 && p != 3) ? 3 : (q != 2 && p != 2) ? 2 : 1;
  T c[L], s[L];
  MVLIFT_LANES
  for (int l = 0; l < L; ++l) {
    // Every operation runs unconditionally and only values are selected, so the loop vectorises.
    const T apq = a[p][q][l];
    const T h = a[q][q][l] - a[p][p][l];
    const bool rot = active[l] & (hd_abs(apq) > Limits<T>::tiny);  // no short circuit: no branch
    const T ah = hd_abs(h);
    const T r = hd_fast_sqrt(h * h + T(4) * apq * apq);
    const T d0 = r * (ah + r);
    const T inv = hd_rsqrt(rot ? d0 : T(1));
    const T sgn = h < T(0) ? T(-1) : T(1);
    const T sa = sgn * kSqrt2 * apq;  // sgn(h) sqrt(2) a_pq
    const T s0 = sa * inv;
    const T c0 = (ah + r) * inv * kInvSqrt2;
    const T t0 = sgn * sa * sa * r * inv * inv;
    s[l] = rot ? s0 : T(0);
    c[l] = rot ? c0 : T(1);
    const T ta = rot ? t0 : T(0);
    a[p][p][l] -= ta;
    a[q][q][l] += ta;
    a[p][q][l] = rot ? T(0) : apq;
  }
  jacobi_rotate_offdiag<k0, p, q>(a, c, s);
  jacobi_rotate_offdiag<k1, p, q>(a, c, s);
  jacobi_rotate_vectors<0, p, q>(v, c, s);
  jacobi_rotate_vectors<1, p, q>(v, c, s);
  jacobi_rotate_vectors<2, p, q>(v, c, s);
  jacobi_rotate_vectors<3, p, q>(v, c, s);
}

// Maximum cyclic sweeps; a 4x4 matrix converges quadratically and in practice stops after 3 to 5.
constexpr int kMaxJacobiSweeps = 10;

// Eigen-decomposition of L symmetric 4x4 matrices a (upper triangle; overwritten). On return the
// diagonal of a holds the eigenvalues and column j of v the unit eigenvector of a[j][j]. A lane stops
// rotating once its off-diagonal mass is below eps^2 times its diagonal mass (each eigenvector is then
// accurate to about eps * lambda_max / gap), so its result does not depend on the other lanes; the loop
// ends when every lane has stopped, or after kMaxJacobiSweeps. A NaN lane gives NaN and still
// terminates. Entries should be O(1) (the caller scales by the trace) so that squares neither overflow
// nor underflow.
template <int L, typename T>
MVLIFT_HD inline void jacobi_eigen4(T (&a)[4][4][L], T (&v)[4][4][L]) {
#ifdef __CUDA_ARCH__
#pragma unroll
#endif
  for (int r = 0; r < 4; ++r) {
#ifdef __CUDA_ARCH__
#pragma unroll
#endif
    for (int k = 0; k < 4; ++k) {
#ifdef __CUDA_ARCH__
#pragma unroll
#endif
      for (int l = 0; l < L; ++l) v[r][k][l] = r == k ? T(1) : T(0);
    }
  }
  for (int sweep = 0; sweep < kMaxJacobiSweeps; ++sweep) {
    bool active[L];
    bool done = true;
#ifdef __CUDA_ARCH__
#pragma unroll
#endif
    for (int l = 0; l < L; ++l) {
      const T off = a[0][1][l] * a[0][1][l] + a[0][2][l] * a[0][2][l] + a[0][3][l] * a[0][3][l] +
                    a[1][2][l] * a[1][2][l] + a[1][3][l] * a[1][3][l] + a[2][3][l] * a[2][3][l];
      const T diag = a[0][0][l] * a[0][0][l] + a[1][1][l] * a[1][1][l] + a[2][2][l] * a[2][2][l] +
                     a[3][3][l] * a[3][3][l];
      active[l] = off > Limits<T>::eps * Limits<T>::eps * diag;  // NaN counts as converged
      done &= !active[l];
    }
    if (done) break;
    jacobi_rotate<0, 1>(a, v, active);
    jacobi_rotate<0, 2>(a, v, active);
    jacobi_rotate<0, 3>(a, v, active);
    jacobi_rotate<1, 2>(a, v, active);
    jacobi_rotate<1, 3>(a, v, active);
    jacobi_rotate<2, 3>(a, v, active);
  }
}

// Solves A x = b for a symmetric 3x3 A given by its upper triangle (a00, a01, a02, a11, a12, a22), by
// A = L D L^T. Returns false (x untouched) when a pivot is not positive, i.e. A is not positive definite.
template <typename T>
MVLIFT_HD inline bool ldlt_solve3(const T (&A)[6], const T (&b)[3], T (&x)[3]) {
  const T d0 = A[0];
  if (!(d0 > T(0))) return false;
  const T l10 = A[1] / d0, l20 = A[2] / d0;
  const T d1 = A[3] - l10 * A[1];
  if (!(d1 > T(0))) return false;
  const T l21 = (A[4] - l20 * A[1]) / d1;
  const T d2 = A[5] - l20 * A[2] - l21 * l21 * d1;
  if (!(d2 > T(0))) return false;
  const T y0 = b[0];
  const T y1 = b[1] - l10 * y0;
  const T y2 = b[2] - l20 * y0 - l21 * y1;
  x[2] = y2 / d2;
  x[1] = y1 / d1 - l21 * x[2];
  x[0] = y0 / d0 - l10 * x[1] - l20 * x[2];
  return true;
}

}  // namespace tri
}  // namespace MVLIFT_ISA_NAMESPACE
}  // namespace mvlift
