// CPU entry point of triangulate.h: the baseline copy of triangulate_cpu_impl.h, and the run-time dispatch to
// the AVX2 + FMA copy (triangulate_cpu_avx2.cpp) where the build has it and the processor supports it.
#include "common/cpu_isa.h"
#include "triangulate/triangulate_cpu_impl.h"

namespace mvlift {

#ifdef MVLIFT_HAVE_AVX2
namespace isa_avx2 {
template <typename T>
void triangulate_cpu_isa(const TriangulateArgs<T>& a);  // triangulate_cpu_avx2.cpp
}  // namespace isa_avx2
#endif

template <typename T>
void triangulate_cpu(const TriangulateArgs<T>& a) {
#ifdef MVLIFT_HAVE_AVX2
  if (cpu_isa() == CpuIsa::kAvx2) return isa_avx2::triangulate_cpu_isa<T>(a);
#endif
  isa_baseline::triangulate_cpu_isa<T>(a);
}

template void triangulate_cpu<float>(const TriangulateArgs<float>&);
template void triangulate_cpu<double>(const TriangulateArgs<double>&);

}  // namespace mvlift
