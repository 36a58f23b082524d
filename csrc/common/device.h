// Host/device portability helpers for the small-matrix cores that the C++ CPU and CUDA kernels share.
//
// Everything here is header-only, allocation-free and branch-light, so a CUDA thread keeps it in registers.
#pragma once
#include <math.h>

#ifdef __CUDACC__
#define MVLIFT_HD __host__ __device__
#else
#define MVLIFT_HD
#endif

// Inline namespace of everything in these shared headers. A translation unit compiled for a wider instruction
// set (triangulate_cpu_avx2.cpp, -mavx2 -mfma) defines it to its own name before any include, so its copies of
// these inline functions get their own symbols: the linker can never merge them with, and hand them to, the
// baseline code (an AVX2 instruction reached on a processor without AVX2 would be SIGILL).
#ifndef MVLIFT_ISA_NAMESPACE
#define MVLIFT_ISA_NAMESPACE isa_baseline
#endif

namespace mvlift {
inline namespace MVLIFT_ISA_NAMESPACE {

// Floating-point constants usable in device code (std::numeric_limits members are not __device__).
template <typename T>
struct Limits;
template <>
struct Limits<float> {
  static constexpr float eps = 1.1920928955078125e-7f;  // 2^-23
  static constexpr float sqrt_eps = 3.4526698300124393e-4f;
  static constexpr float max = 3.4028234663852886e38f;
  static constexpr float tiny = 1e-18f;  // its square is still a normal number
};
template <>
struct Limits<double> {
  static constexpr double eps = 2.220446049250313e-16;  // 2^-52
  static constexpr double sqrt_eps = 1.4901161193847656e-8;
  static constexpr double max = 1.7976931348623157e308;
  static constexpr double tiny = 1e-150;
};

MVLIFT_HD inline float hd_sqrt(float v) { return sqrtf(v); }
MVLIFT_HD inline double hd_sqrt(double v) { return sqrt(v); }
MVLIFT_HD inline float hd_abs(float v) { return fabsf(v); }
MVLIFT_HD inline double hd_abs(double v) { return fabs(v); }
// 1 / sqrt(v) and sqrt(v) for the hot loops: on the GPU the hardware reciprocal square root (float: rsqrtf,
// about 2 ulp; double: rsqrt, 1 ulp) replaces an IEEE square root plus an IEEE division; on the CPU they
// are the correctly rounded operations. Inputs must be positive normal numbers.
MVLIFT_HD inline float hd_rsqrt(float v) {
#ifdef __CUDA_ARCH__
  return rsqrtf(v);
#else
  return 1.0f / sqrtf(v);
#endif
}
MVLIFT_HD inline double hd_rsqrt(double v) {
#ifdef __CUDA_ARCH__
  return rsqrt(v);
#else
  return 1.0 / sqrt(v);
#endif
}
template <typename T>
MVLIFT_HD inline T hd_fast_sqrt(T v) {
#ifdef __CUDA_ARCH__
  return v * hd_rsqrt(v);
#else
  return hd_sqrt(v);
#endif
}
MVLIFT_HD inline float hd_nan(float) { return nanf(""); }
MVLIFT_HD inline double hd_nan(double) { return nan(""); }

// True for finite values (false for NaN and +-inf); written without std::isfinite so it also runs on the GPU.
template <typename T>
MVLIFT_HD inline bool hd_finite(T v) {
  return hd_abs(v) <= Limits<T>::max;
}

}  // namespace MVLIFT_ISA_NAMESPACE
}  // namespace mvlift
