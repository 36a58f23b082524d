// The CUDA runtime that mvlift._C links (cudart_static, so the module imports without a CUDA runtime library):
// a device guard for the launchers and a readiness check for the Python dispatch. Only CUDA builds compile
// this (csrc/common/runtime_cuda.cu and the *_cuda.cu launchers include it).
//
// The static runtime keeps its own notion of the calling thread's current device, independent of torch's.
// Every launcher therefore makes the tensors' device current for the duration of its launch (CudaDeviceGuard),
// as torch's own operators do; without it a tensor on a GPU other than the current one would be handed to a
// kernel launched on the wrong device.
//
// This runtime is CUDA 13's when built with nvcc 13, and CUDA 13 needs an NVIDIA driver of release r580 or
// newer: with an older driver every runtime call fails with cudaErrorInsufficientDriver ("CUDA driver version
// is insufficient for CUDA runtime version"). cuda_runtime_error() reports that (with both versions) so the
// Python side can fall back to the PyTorch reference with a clear warning instead of failing in every call.
#pragma once
#include <cstdint>
#include <string>

namespace mvlift {

// "" when this module's CUDA runtime works and sees at least one device; else why not (the runtime's error,
// the driver and runtime versions, and for an old driver the r580+ requirement).
std::string cuda_runtime_error();

// (driver version, runtime version) as CUDA encodes them (1000 * major + 10 * minor); 0 when unknown.
int cuda_driver_version();
int cuda_runtime_version();

// Makes `device` the calling thread's current CUDA device (in this module's runtime) for the guard's lifetime
// and restores the previous one afterwards. Throws std::runtime_error naming `op` when the runtime fails.
class CudaDeviceGuard {
 public:
  CudaDeviceGuard(int device, const char* op);
  ~CudaDeviceGuard();
  CudaDeviceGuard(const CudaDeviceGuard&) = delete;
  CudaDeviceGuard& operator=(const CudaDeviceGuard&) = delete;

 private:
  int previous_ = -1;
  bool changed_ = false;
};

// Throws std::runtime_error "<op>: <CUDA error string>" (plus the driver hint for an old driver) unless
// `status` (a cudaError_t) is cudaSuccess.
void check_cuda(int status, const char* op);

}  // namespace mvlift
