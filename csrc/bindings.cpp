// nanobind bindings of mvlift's native kernels (module mvlift._C).
//
// Every function takes its inputs AND its preallocated outputs as DLPack tensors (torch tensors pass
// directly), so the extension never allocates and never links against libtorch. Arguments are typed
// (dtype, shape, C-contiguity, device) and marked .noconvert(): a mismatching tensor is rejected with a
// TypeError instead of being silently copied. The Python wrappers in mvlift.ops check shapes first and
// give friendlier messages; these signatures are the last line of defence.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <cstdint>
#include <stdexcept>

#include "common/parallel.h"
#include "project/project.h"

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

#ifdef MVLIFT_WITH_CUDA
template <typename T>
void bind_project_cuda(nb::module_& m) {
  using D = nb::device::cuda;
  m.def(
      "project_points_cuda",
      [](Points3<T, D> X, Proj<T, D> P, Out2<T, D> out, Out1<T, D> depth, uintptr_t stream) {
        check_project_shapes<D, T>(X, P, out, depth);
        project_points_cuda<T>(X.data(), P.data(), static_cast<int64_t>(X.shape(0)), P.shape(0) == 1, out.data(),
                               depth.data(), stream);
      },
      "X"_a.noconvert(), "P"_a.noconvert(), "out"_a.noconvert(), "depth"_a.noconvert(), "stream"_a,
      "Project on the GPU, on the given CUDA stream (pass torch.cuda.current_stream().cuda_stream).");
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
  mvlift::bind_project_cpu<float>(m);
  mvlift::bind_project_cpu<double>(m);
#ifdef MVLIFT_WITH_CUDA
  mvlift::bind_project_cuda<float>(m);
  mvlift::bind_project_cuda<double>(m);
#endif
}
