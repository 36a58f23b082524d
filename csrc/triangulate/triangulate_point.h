// Triangulation of ONE point from its V views: the algorithm of triangulate.h, written once for the CPU
// loop and the CUDA thread. No allocation, no recursion, every loop bounded (V, Jacobi sweeps, LM steps).
#pragma once
#include <cstdint>

#include "common/device.h"
#include "triangulate/solver.h"

namespace mvlift {
inline namespace MVLIFT_ISA_NAMESPACE {
namespace tri {

// Bits of the flags output (mirrored by mvlift.ops.triangulate.TriangulationFlag).
constexpr int32_t kDegenerate = 1;
constexpr int32_t kBehindCamera = 2;
constexpr int32_t kNotConverged = 4;

// Levenberg-Marquardt damping schedule (documented in triangulate.h).
constexpr double kLambdaInit = 1e-3;
constexpr double kLambdaMin = 1e-12;
constexpr double kLambdaMax = 1e12;
// Rank test: the second-smallest eigenvalue of the normal matrix must exceed this * eps * the largest.
constexpr double kRankTolEps = 100.0;
// LM acceptance: the candidate cost may exceed the current one by this * eps * (cost + sqrt(cost * S)),
// S = sum_v w_v |x_v|^2: the rounding noise of a cost whose residuals are differences of |x|-sized numbers.
constexpr double kAcceptSlackEps = 4.0;

// Camera sets of one point. Both expose proj(v) (row-major 3x4), camera(v) (centre + sign) and sign(v).
// PrecomputedCameras: centres computed once per call (shared P). RawCameras: computed on demand (per-item P).
template <typename T>
struct PrecomputedCameras {
  const T* P;
  const Camera<T>* cam;
  MVLIFT_HD const T* proj(int64_t v) const { return P + 12 * v; }
  MVLIFT_HD Camera<T> camera(int64_t v) const { return cam[v]; }
  MVLIFT_HD T sign(int64_t v) const { return cam[v].sign; }
};

template <typename T>
struct RawCameras {
  const T* P;
  MVLIFT_HD const T* proj(int64_t v) const { return P + 12 * v; }
  MVLIFT_HD Camera<T> camera(int64_t v) const {
    return camera_of(P + 12 * v);
  }
  MVLIFT_HD T sign(int64_t v) const { return camera_sign(P + 12 * v); }
};

// Observations of one point: x of view v at x[v * xs], x[v * xs + 1]; weight at w[v * ws] (w null: 1).
template <typename T>
struct Observations {
  const T* x;
  int64_t xs;
  const T* w;
  int64_t ws;
  // Reads view v; true when the observation is usable (finite coordinates, finite weight > 0).
  MVLIFT_HD bool get(int64_t v, T& u, T& y, T& wt) const {
    u = x[v * xs];
    y = x[v * xs + 1];
    wt = w ? w[v * ws] : T(1);
    return wt > T(0) && wt <= Limits<T>::max && hd_finite(u) && hd_finite(y);
  }
};

// Weighted reprojection cost at X = c + s Xn, optionally with the Gauss-Newton normal equations in Xn:
// H = sum w J^T J (upper triangle a00 a01 a02 a11 a12 a22), g = sum w J^T r, r = proj(X) - x.
template <typename T>
struct Evaluation {
  T cost;
  T obs2;  // sum_v w_v |x_v|^2
  T H[6];
  T g[3];
  bool behind;
};

template <bool kJacobian, typename T, class Cams>
MVLIFT_HD inline Evaluation<T> evaluate(const Cams& cams, const Observations<T>& obs, int64_t V, const T (&c)[3],
                                        T s, const T (&Xn)[3]) {
  const T X0 = c[0] + s * Xn[0], X1 = c[1] + s * Xn[1], X2 = c[2] + s * Xn[2];
  Evaluation<T> e;
  e.cost = T(0);
  e.obs2 = T(0);
  for (int k = 0; k < 6; ++k) e.H[k] = T(0);
  for (int k = 0; k < 3; ++k) e.g[k] = T(0);
  e.behind = false;
  for (int64_t v = 0; v < V; ++v) {
    T u, y, wt;
    if (!obs.get(v, u, y, wt)) continue;
    const T sg = cams.sign(v);
    if (sg == T(0)) continue;
    const T* p = cams.proj(v);
    const T a = p[0] * X0 + p[1] * X1 + p[2] * X2 + p[3];
    const T b = p[4] * X0 + p[5] * X1 + p[6] * X2 + p[7];
    const T z = p[8] * X0 + p[9] * X1 + p[10] * X2 + p[11];
    if (!(z * sg > T(0))) e.behind = true;
    const T iz = T(1) / z;
    const T pu = a * iz, pv = b * iz;
    const T ru = pu - u, rv = pv - y;
    e.cost += wt * (ru * ru + rv * rv);
    e.obs2 += wt * (u * u + y * y);
    if (kJacobian) {
      const T k = s * iz;
      const T ju0 = (p[0] - pu * p[8]) * k, ju1 = (p[1] - pu * p[9]) * k, ju2 = (p[2] - pu * p[10]) * k;
      const T jv0 = (p[4] - pv * p[8]) * k, jv1 = (p[5] - pv * p[9]) * k, jv2 = (p[6] - pv * p[10]) * k;
      e.H[0] += wt * (ju0 * ju0 + jv0 * jv0);
      e.H[1] += wt * (ju0 * ju1 + jv0 * jv1);
      e.H[2] += wt * (ju0 * ju2 + jv0 * jv2);
      e.H[3] += wt * (ju1 * ju1 + jv1 * jv1);
      e.H[4] += wt * (ju1 * ju2 + jv1 * jv2);
      e.H[5] += wt * (ju2 * ju2 + jv2 * jv2);
      e.g[0] += wt * (ju0 * ru + jv0 * rv);
      e.g[1] += wt * (ju1 * ru + jv1 * rv);
      e.g[2] += wt * (ju2 * ru + jv2 * rv);
    }
  }
  return e;
}

template <typename T>
MVLIFT_HD inline void write_degenerate(T* X, T* rms, int32_t* flags) {
  const T nan = hd_nan(T(0));
  X[0] = X[1] = X[2] = nan;
  *rms = nan;
  *flags = kDegenerate;
}

// Steps 1-2 of triangulate.h for one point: valid views, world normalisation and the trace-normalised DLT
// normal matrix (upper triangle m00 m01 m02 m03 m11 m12 m13 m22 m23 m33). ok == false: DEGENERATE already.
template <typename T>
struct Prepared {
  T m[10];
  T c[3];
  T s;
  T wsum;
  int32_t n;
  bool ok;
};

template <typename T, class Cams>
MVLIFT_HD inline Prepared<T> prepare_point(const Cams& cams, const Observations<T>& obs, int64_t V) {
  Prepared<T> st;
  for (int k = 0; k < 10; ++k) st.m[k] = T(0);
  // 1. Centroid c and RMS spread s of the valid camera centres, from sums shifted by the first centre.
  int32_t n = 0;
  T wsum = T(0), ss = T(0);
  T k0[3] = {T(0), T(0), T(0)}, sd[3] = {T(0), T(0), T(0)};
  for (int64_t v = 0; v < V; ++v) {
    T u, y, wt;
    if (!obs.get(v, u, y, wt)) continue;
    const Camera<T> cam = cams.camera(v);
    if (cam.sign == T(0)) continue;
    if (n == 0) {
      k0[0] = cam.C[0];
      k0[1] = cam.C[1];
      k0[2] = cam.C[2];
    }
    ++n;
    wsum += wt;
    const T d0 = cam.C[0] - k0[0], d1 = cam.C[1] - k0[1], d2 = cam.C[2] - k0[2];
    sd[0] += d0;
    sd[1] += d1;
    sd[2] += d2;
    ss += d0 * d0 + d1 * d1 + d2 * d2;
  }
  st.n = n;
  st.wsum = wsum;
  st.ok = false;
  if (n < 2) return st;
  const T inv_n = T(1) / T(n);
  const T mean[3] = {sd[0] * inv_n, sd[1] * inv_n, sd[2] * inv_n};
  const T var = ss * inv_n - (mean[0] * mean[0] + mean[1] * mean[1] + mean[2] * mean[2]);
  const T s = hd_sqrt(var > T(0) ? var : T(0));
  const T c[3] = {k0[0] + mean[0], k0[1] + mean[1], k0[2] + mean[2]};
  const T c_norm = hd_sqrt(c[0] * c[0] + c[1] * c[1] + c[2] * c[2]);
  if (!(s > Limits<T>::sqrt_eps * c_norm) || !hd_finite(s)) return st;
  st.c[0] = c[0];
  st.c[1] = c[1];
  st.c[2] = c[2];
  st.s = s;
  const T inv_s = T(1) / s;

  // 2. Normal matrix of the row-normalised DLT in the normalised world frame.
  T* m = st.m;
  for (int64_t v = 0; v < V; ++v) {
    T u, y, wt;
    if (!obs.get(v, u, y, wt)) continue;
    if (cams.sign(v) == T(0)) continue;
    const T* p = cams.proj(v);
    for (int row = 0; row < 2; ++row) {
      const T coord = row == 0 ? u : y;
      const T* q = p + 4 * row;
      const T r0 = coord * p[8] - q[0], r1 = coord * p[9] - q[1], r2 = coord * p[10] - q[2];
      const T r3 = coord * p[11] - q[3];
      const T n2 = r0 * r0 + r1 * r1 + r2 * r2;
      if (!(n2 > T(0))) continue;
      const T k = hd_rsqrt(n2);
      const T e0 = r0 * k, e1 = r1 * k, e2 = r2 * k;
      const T e3 = (r0 * c[0] + r1 * c[1] + r2 * c[2] + r3) * (k * inv_s);
      const T w0 = wt * e0, w1 = wt * e1, w2 = wt * e2, w3 = wt * e3;
      m[0] += w0 * e0;
      m[1] += w0 * e1;
      m[2] += w0 * e2;
      m[3] += w0 * e3;
      m[4] += w1 * e1;
      m[5] += w1 * e2;
      m[6] += w1 * e3;
      m[7] += w2 * e2;
      m[8] += w2 * e3;
      m[9] += w3 * e3;
    }
  }
  const T trace = m[0] + m[4] + m[7] + m[9];
  if (!(trace > T(0)) || !hd_finite(trace)) return st;
  const T inv_tr = T(1) / trace;
  for (int k = 0; k < 10; ++k) m[k] *= inv_tr;
  st.ok = true;
  return st;
}

// Writes lane l of the Jacobi input a (upper triangle) from m (a zero matrix for a DEGENERATE point).
template <int L, typename T>
MVLIFT_HD inline void load_normal_matrix(const Prepared<T>& st, T (&a)[4][4][L], int l) {
  // Element-wise selects (no pointer select), so that a CUDA thread keeps everything in registers.
  const T* m = st.m;
  const bool ok = st.ok;
  a[0][0][l] = ok ? m[0] : T(0);
  a[0][1][l] = ok ? m[1] : T(0);
  a[0][2][l] = ok ? m[2] : T(0);
  a[0][3][l] = ok ? m[3] : T(0);
  a[1][1][l] = ok ? m[4] : T(0);
  a[1][2][l] = ok ? m[5] : T(0);
  a[1][3][l] = ok ? m[6] : T(0);
  a[2][2][l] = ok ? m[7] : T(0);
  a[2][3][l] = ok ? m[8] : T(0);
  a[3][3][l] = ok ? m[9] : T(0);
}

// Steps 3-4 of triangulate.h for one point, from lane l of the eigen-decomposition (a: eigenvalues on the
// diagonal, v: eigenvectors as columns); writes X[0..2], *rms, *nvalid and *flags.
template <int L, typename T, class Cams>
MVLIFT_HD inline void finish_point(const Cams& cams, const Observations<T>& obs, int64_t V, int refine_iters,
                                   const Prepared<T>& st, const T (&a)[4][4][L], const T (&ev)[4][4][L], int l,
                                   T* X, T* rms, int32_t* nvalid, int32_t* flags) {
  constexpr T eps = Limits<T>::eps;
  constexpr T sqrt_eps = Limits<T>::sqrt_eps;
  *nvalid = st.n;
  if (!st.ok) return write_degenerate(X, rms, flags);

  // 3. Smallest eigenvector; rank and at-infinity tests (the matrix is trace-normalised).
  const T d[4] = {a[0][0][l], a[1][1][l], a[2][2][l], a[3][3][l]};
  int kmin = 0;
  T dmin = d[0];
  for (int j = 1; j < 4; ++j) {
    if (d[j] < dmin) {
      kmin = j;
      dmin = d[j];
    }
  }
  T lam2 = Limits<T>::max, lam_max = d[0];
  for (int j = 0; j < 4; ++j) {
    if (j != kmin && d[j] < lam2) lam2 = d[j];
    if (d[j] > lam_max) lam_max = d[j];
  }
  if (!(lam_max > T(0)) || !(lam2 > T(kRankTolEps) * eps * lam_max)) return write_degenerate(X, rms, flags);
  T e[4];
  for (int r = 0; r < 4; ++r)
    e[r] = kmin == 0 ? ev[r][0][l] : kmin == 1 ? ev[r][1][l] : kmin == 2 ? ev[r][2][l] : ev[r][3][l];
  const T e_norm = hd_sqrt(e[0] * e[0] + e[1] * e[1] + e[2] * e[2]);
  if (!(hd_abs(e[3]) > sqrt_eps * e_norm)) return write_degenerate(X, rms, flags);
  T Xn[3] = {e[0] / e[3], e[1] / e[3], e[2] / e[3]};
  const T s = st.s;
  const T c[3] = {st.c[0], st.c[1], st.c[2]};

  // 4. Reprojection cost at the DLT point, then Levenberg-Marquardt.
  Evaluation<T> cur = refine_iters > 0 ? evaluate<true>(cams, obs, V, c, s, Xn)
                                       : evaluate<false>(cams, obs, V, c, s, Xn);
  const bool keep_in_front = !cur.behind;
  T lambda = T(kLambdaInit);
  T last_step = T(0);
  for (int it = 0; it < refine_iters; ++it) {
    const T A[6] = {cur.H[0] * (T(1) + lambda), cur.H[1], cur.H[2], cur.H[3] * (T(1) + lambda), cur.H[4],
                    cur.H[5] * (T(1) + lambda)};
    const T b[3] = {-cur.g[0], -cur.g[1], -cur.g[2]};
    T step[3];
    if (!ldlt_solve3(A, b, step)) {
      lambda = lambda * T(10) < T(kLambdaMax) ? lambda * T(10) : T(kLambdaMax);
      last_step = Limits<T>::max;
      continue;
    }
    const T Xc[3] = {Xn[0] + step[0], Xn[1] + step[1], Xn[2] + step[2]};
    last_step = hd_sqrt(step[0] * step[0] + step[1] * step[1] + step[2] * step[2]) /
                (T(1) + hd_sqrt(Xn[0] * Xn[0] + Xn[1] * Xn[1] + Xn[2] * Xn[2]));
    const Evaluation<T> cand = evaluate<true>(cams, obs, V, c, s, Xc);
    // Accept unless the cost rose by more than its rounding noise: near the minimum, cost differences
    // drown in that noise while the Gauss-Newton step is still accurate, so a strict "<" would stall far
    // from the minimiser (at ~sqrt(noise)).
    const T slack = T(kAcceptSlackEps) * eps * (cur.cost + hd_sqrt(cur.cost * cur.obs2));
    if (cand.cost <= cur.cost + slack && !(keep_in_front && cand.behind)) {
      Xn[0] = Xc[0];
      Xn[1] = Xc[1];
      Xn[2] = Xc[2];
      cur = cand;
      lambda = lambda * T(0.1) > T(kLambdaMin) ? lambda * T(0.1) : T(kLambdaMin);
    } else {
      lambda = lambda * T(10) < T(kLambdaMax) ? lambda * T(10) : T(kLambdaMax);
    }
  }

  X[0] = c[0] + s * Xn[0];
  X[1] = c[1] + s * Xn[1];
  X[2] = c[2] + s * Xn[2];
  if (!hd_finite(X[0]) || !hd_finite(X[1]) || !hd_finite(X[2])) return write_degenerate(X, rms, flags);
  *rms = hd_sqrt(cur.cost / st.wsum);
  int32_t f = cur.behind ? kBehindCamera : 0;
  if (refine_iters > 0 && !(last_step <= sqrt_eps)) f |= kNotConverged;
  *flags = f;
}

// The whole method for one point (the CUDA thread's path; the CPU batches the Jacobi step over 8 points).
template <typename T, class Cams>
MVLIFT_HD inline void triangulate_point(const Cams& cams, const Observations<T>& obs, int64_t V, int refine_iters,
                                        T* X, T* rms, int32_t* nvalid, int32_t* flags) {
  const Prepared<T> st = prepare_point(cams, obs, V);
  T a[4][4][1], ev[4][4][1];
  load_normal_matrix<1>(st, a, 0);
  jacobi_eigen4<1>(a, ev);
  finish_point<1>(cams, obs, V, refine_iters, st, a, ev, 0, X, rms, nvalid, flags);
}

}  // namespace tri
}  // namespace MVLIFT_ISA_NAMESPACE
}  // namespace mvlift
