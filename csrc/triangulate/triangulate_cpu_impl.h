// CPU implementation of triangulate.h, compiled once per instruction set: triangulate_cpu.cpp (the target's
// baseline, namespace mvlift::isa_baseline) and triangulate_cpu_avx2.cpp (-mavx2 -mfma, which defines
// MVLIFT_ISA_NAMESPACE as isa_avx2 before any include; see common/device.h). triangulate_cpu.cpp picks one at
// run time (common/cpu_isa.h).
//
// Threads over points (common/parallel.h). Within a thread, points go in groups of kLanes: each is prepared
// alone, the group's Jacobi eigen-solves run in lock-step (so the compiler vectorises them across points and
// their square-root/division chains overlap), then each point is finished alone. Results are identical to
// one point at a time.
#pragma once
#include <vector>

#include "common/parallel.h"
#include "triangulate/triangulate.h"
#include "triangulate/triangulate_point.h"

namespace mvlift {
inline namespace MVLIFT_ISA_NAMESPACE {
namespace {

constexpr int kLanes = 8;

template <typename T, class MakeCams>
void run_points(const TriangulateArgs<T>& a, MakeCams make_cams) {
  const int64_t n = a.B * a.M;
  auto observations = [&](int64_t i) {
    const int64_t b = i / a.M, m = i - b * a.M;
    const int64_t base = b * a.V * a.M + m;
    return tri::Observations<T>{a.x + 2 * base, 2 * a.M, a.w ? a.w + base : nullptr, a.M};
  };
  // A point costs a fraction of a microsecond: chunks of 1024 keep the thread start-up negligible.
  parallel_for(n, 1024, [&](int64_t begin, int64_t end) {
    tri::Prepared<T> st[kLanes];
    T eig[4][4][kLanes], vec[4][4][kLanes];
    for (int64_t i0 = begin; i0 < end; i0 += kLanes) {
      const int lanes = static_cast<int>(end - i0 < kLanes ? end - i0 : kLanes);
      for (int l = 0; l < kLanes; ++l) {
        if (l < lanes) st[l] = tri::prepare_point(make_cams((i0 + l) / a.M), observations(i0 + l), a.V);
        else st[l].ok = false;
        tri::load_normal_matrix<kLanes>(st[l], eig, l);
      }
      tri::jacobi_eigen4<kLanes>(eig, vec);
      for (int l = 0; l < lanes; ++l) {
        const int64_t i = i0 + l;
        tri::finish_point<kLanes>(make_cams(i / a.M), observations(i), a.V, a.refine_iters, st[l], eig, vec, l,
                                  a.X + 3 * i, a.rms + i, a.nvalid + i, a.flags + i);
      }
    }
  });
}

}  // namespace

// triangulate_cpu of triangulate.h, in this translation unit's instruction set.
template <typename T>
void triangulate_cpu_isa(const TriangulateArgs<T>& a) {
  if (a.B * a.M == 0) return;
  if (a.shared_P) {
    std::vector<tri::Camera<T>> cams(static_cast<size_t>(a.V));
    for (int64_t v = 0; v < a.V; ++v) cams[v] = tri::camera_of(a.P + 12 * v);
    const tri::PrecomputedCameras<T> shared{a.P, cams.data()};
    run_points(a, [&](int64_t) { return shared; });
  } else {
    run_points(a, [&](int64_t b) { return tri::RawCameras<T>{a.P + 12 * a.V * b}; });
  }
}

template void triangulate_cpu_isa<float>(const TriangulateArgs<float>&);
template void triangulate_cpu_isa<double>(const TriangulateArgs<double>&);

}  // namespace MVLIFT_ISA_NAMESPACE
}  // namespace mvlift
