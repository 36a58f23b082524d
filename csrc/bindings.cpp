// nanobind bindings of mvlift's native kernels (module mvlift._C).
//
// Every function takes its inputs AND its preallocated outputs as DLPack tensors (torch tensors pass
// directly), so the extension never allocates and never links against libtorch. Arguments are typed
// (dtype, shape, C-contiguity, device) and marked .noconvert(): a mismatching tensor is rejected with a
// TypeError instead of being silently copied. The Python wrappers in mvlift.ops check shapes first and
// give friendlier messages; these signatures are the last line of defence.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "common/cpu_isa.h"
#ifdef MVLIFT_WITH_CUDA
#include "common/cuda_runtime.h"
#endif
#include "common/parallel.h"
#include "project/project.h"
#include "triangulate/triangulate.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace mvlift {
namespace {


template <typename T, typename Dev>
using Points3 = nb::ndarray<const T, nb::shape<-1, 3>, nb::c_contig, Dev>;
template <typename T, typename Dev>
using Proj = nb::ndarray<const T, nb::shape<-1, 3, 4>, nb::c_contig, Dev>;
template <typename T, typename Dev>
using Out2 = nb::ndarray<T, nb::shape<-1, 2>, nb::c_contig, Dev>;
template <typename T, typename Dev>
using Out1 = nb::ndarray<T, nb::shape<-1>, nb::c_contig, Dev>;

template <typename Dev, typename T>
void check_project_shapes(const Points3<T, Dev>& X, const Proj<T, Dev>& P, const Out2<T, Dev>& out,
                          const Out1<T, Dev>& depth) {
  const size_t n = X.shape(0);
  if (P.shape(0) != 1 && P.shape(0) != n)
    throw std::invalid_argument("project_points: P must have 1 or N matrices");
  if (out.shape(0) != n || depth.shape(0) != n)
    throw std::invalid_argument("project_points: out/depth must have N rows");
}

template <typename T>
void bind_project_cpu(nb::module_& m) {
  using D = nb::device::cpu;
  m.def(
      "project_points",
      [](Points3<T, D> X, Proj<T, D> P, Out2<T, D> out, Out1<T, D> depth) {
        check_project_shapes<D, T>(X, P, out, depth);
        nb::gil_scoped_release release;
        project_points_cpu<T>(X.data(), P.data(), static_cast<int64_t>(X.shape(0)), P.shape(0) == 1, out.data(),
                              depth.data());
      },
      "X"_a.noconvert(), "P"_a.noconvert(), "out"_a.noconvert(), "depth"_a.noconvert(),
      "Project (N, 3) points with (1 or N, 3, 4) matrices into out (N, 2) and depth (N,), on the CPU.");
}


template <typename T, typename Dev>
using Obs4 = nb::ndarray<const T, nb::shape<-1, -1, -1, 2>, nb::c_contig, Dev>;
template <typename T, typename Dev>
using ViewProj = nb::ndarray<const T, nb::shape<-1, -1, 3, 4>, nb::c_contig, Dev>;
template <typename T, typename Dev>
using Weights3 = nb::ndarray<const T, nb::shape<-1, -1, -1>, nb::c_contig, Dev>;
template <typename T, typename Dev>
using OutPoints = nb::ndarray<T, nb::shape<-1, -1, 3>, nb::c_contig, Dev>;
template <typename T, typename Dev>
using OutScalar = nb::ndarray<T, nb::shape<-1, -1>, nb::c_contig, Dev>;

// Checks the layout of triangulate.h and fills the kernel arguments.
template <typename T, typename Dev>
TriangulateArgs<T> triangulate_args(const Obs4<T, Dev>& x, const ViewProj<T, Dev>& P, const Weights3<T, Dev>& w,
                                    int refine_iters, const OutPoints<T, Dev>& X, const OutScalar<T, Dev>& rms,
                                    const OutScalar<int32_t, Dev>& nvalid, const OutScalar<int32_t, Dev>& flags) {
  const size_t B = x.shape(0), V = x.shape(1), M = x.shape(2);
  if (P.shape(1) != V) throw std::invalid_argument("triangulate: P must have the V views of x (B, V, M, 2)");
  if (P.shape(0) != 1 && P.shape(0) != B) throw std::invalid_argument("triangulate: P must be (1 or B, V, 3, 4)");
  if (w.is_valid() && (w.shape(0) != B || w.shape(1) != V || w.shape(2) != M))
    throw std::invalid_argument("triangulate: weights must be (B, V, M) like x");
  if (X.shape(0) != B || X.shape(1) != M || rms.shape(0) != B || rms.shape(1) != M || nvalid.shape(0) != B ||
      nvalid.shape(1) != M || flags.shape(0) != B || flags.shape(1) != M)
    throw std::invalid_argument("triangulate: outputs must be X (B, M, 3), rms/nvalid/flags (B, M)");
  if (refine_iters < 0) throw std::invalid_argument("triangulate: refine_iters must be >= 0");
  const int dev = x.device_id();
  if (P.device_id() != dev || (w.is_valid() && w.device_id() != dev) || X.device_id() != dev ||
      rms.device_id() != dev || nvalid.device_id() != dev || flags.device_id() != dev)
    throw std::invalid_argument("triangulate: every array must be on the same device");
  return TriangulateArgs<T>{x.data(),
                            P.data(),
                            w.is_valid() ? w.data() : nullptr,
                            static_cast<int64_t>(B),
                            static_cast<int64_t>(V),
                            static_cast<int64_t>(M),
                            P.shape(0) == 1,
                            refine_iters,
                            X.data(),
                            rms.data(),
                            nvalid.data(),
                            flags.data()};
}

constexpr const char* kTriangulateDoc =
    "Triangulate B*M points from V views (csrc/triangulate/triangulate.h): x (B, V, M, 2), P (1 or B, V, 3, 4), "
    "weights (B, V, M) or None, refine_iters >= 0; writes X (B, M, 3), rms (B, M), nvalid (B, M) int32 and "
    "flags (B, M) int32 in place.";

template <typename T>
void bind_triangulate_cpu(nb::module_& m) {
  using D = nb::device::cpu;
  m.def(
      "triangulate",
      [](Obs4<T, D> x, ViewProj<T, D> P, Weights3<T, D> w, int refine_iters, OutPoints<T, D> X,
         OutScalar<T, D> rms, OutScalar<int32_t, D> nvalid, OutScalar<int32_t, D> flags) {
        const TriangulateArgs<T> args = triangulate_args<T, D>(x, P, w, refine_iters, X, rms, nvalid, flags);
        nb::gil_scoped_release release;
        triangulate_cpu<T>(args);
      },
      "x"_a.noconvert(), "P"_a.noconvert(), "weights"_a.noconvert().none(), "refine_iters"_a,
      "X"_a.noconvert(), "rms"_a.noconvert(), "nvalid"_a.noconvert(), "flags"_a.noconvert(), kTriangulateDoc);
}

#ifdef MVLIFT_WITH_CUDA
template <typename T>
void bind_project_cuda(nb::module_& m) {
  using D = nb::device::cuda;
  m.def(
      "project_points_cuda",
      [](Points3<T, D> X, Proj<T, D> P, Out2<T, D> out, Out1<T, D> depth, uintptr_t stream) {
        check_project_shapes<D, T>(X, P, out, depth);
        project_points_cuda<T>(X.data(), P.data(), static_cast<int64_t>(X.shape(0)), P.shape(0) == 1, out.data(),
                               depth.data(), X.device_id(), stream);
      },
      "X"_a.noconvert(), "P"_a.noconvert(), "out"_a.noconvert(), "depth"_a.noconvert(), "stream"_a,
      "Project on the GPU of X (made current for the launch), on the given CUDA stream of that GPU (pass "
      "torch.cuda.current_stream(X.device).cuda_stream).");
}

template <typename T>
void bind_triangulate_cuda(nb::module_& m) {
  using D = nb::device::cuda;
  m.def(
      "triangulate_cuda",
      [](Obs4<T, D> x, ViewProj<T, D> P, Weights3<T, D> w, int refine_iters, OutPoints<T, D> X,
         OutScalar<T, D> rms, OutScalar<int32_t, D> nvalid, OutScalar<int32_t, D> flags, uintptr_t stream) {
        const TriangulateArgs<T> args = triangulate_args<T, D>(x, P, w, refine_iters, X, rms, nvalid, flags);
        triangulate_cuda<T>(args, x.device_id(), stream);
      },
      "x"_a.noconvert(), "P"_a.noconvert(), "weights"_a.noconvert().none(), "refine_iters"_a,
      "X"_a.noconvert(), "rms"_a.noconvert(), "nvalid"_a.noconvert(), "flags"_a.noconvert(), "stream"_a,
      "Like triangulate, on the GPU of x (made current for the launch), on the given CUDA stream of that GPU "
      "(torch's current stream there).");
}
#endif

}  // namespace
}  // namespace mvlift

NB_MODULE(_C, m) {
  m.doc() = "mvlift native kernels (C++ CPU, and CUDA when built with it)";
#ifdef MVLIFT_WITH_CUDA
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
  m.def("get_num_threads", &mvlift::get_num_threads, "Worker threads used by the CPU kernels.");
  m.def("set_num_threads", &mvlift::set_num_threads, "n"_a, "Set CPU worker threads (0 = hardware concurrency).");
  m.def(
      "cpu_isa", [] { return std::string(mvlift::cpu_isa_name(mvlift::cpu_isa())); },
      "Instruction set of the CPU kernels in use: 'baseline' or 'avx2' (csrc/common/cpu_isa.h).");
  m.def("cpu_supports_avx2", &mvlift::cpu_supports_avx2,
        "True when this build has the AVX2 + FMA kernels and the processor can run them.");
  m.def("set_cpu_isa", &mvlift::set_cpu_isa, "name"_a,
        "Select the CPU kernels' instruction set: 'auto' (the best available), 'baseline' or 'avx2'. The "
        "environment variable MVLIFT_CPU_ISA sets the initial choice.");
  mvlift::bind_project_cpu<float>(m);
  mvlift::bind_project_cpu<double>(m);
  mvlift::bind_triangulate_cpu<float>(m);
  mvlift::bind_triangulate_cpu<double>(m);
#ifdef MVLIFT_WITH_CUDA
  mvlift::bind_project_cuda<float>(m);
  mvlift::bind_project_cuda<double>(m);
  mvlift::bind_triangulate_cuda<float>(m);
  mvlift::bind_triangulate_cuda<double>(m);
  m.def("cuda_runtime_error", &mvlift::cuda_runtime_error,
        "'' when this module's (static) CUDA runtime works and sees a device, else why not: the runtime's "
        "error with, for a driver older than the runtime, the driver requirement (r580+ for CUDA 13).");
  m.def(
      "cuda_versions", [] { return std::make_pair(mvlift::cuda_driver_version(), mvlift::cuda_runtime_version()); },
      "(driver, runtime) CUDA versions as CUDA encodes them (1000 * major + 10 * minor; 0 = unknown).");
#endif
}
