// csrc/common/cuda_runtime.h: the device guard and readiness check of this module's static CUDA runtime.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "common/cuda_runtime.h"

namespace mvlift {
namespace {

std::string version_string(int v) {
  if (v <= 0) return "unknown";
  return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}

std::string driver_hint(cudaError_t err) {
  if (err != cudaErrorInsufficientDriver) return "";
  if (cuda_driver_version() == 0) return " (no NVIDIA driver is loaded on this machine)";
  return " (mvlift._C was built with the CUDA " + version_string(cuda_runtime_version()) +
         " runtime, which needs an NVIDIA driver of at least that CUDA version -- r580 or newer for CUDA 13; "
         "this driver supports CUDA " +
         version_string(cuda_driver_version()) +
         ". Update the driver, or rebuild with an nvcc no newer than the driver's CUDA version)";
}

}  // namespace

int cuda_driver_version() {
  int v = 0;
  return cudaDriverGetVersion(&v) == cudaSuccess ? v : 0;
}

int cuda_runtime_version() {
  int v = 0;
  return cudaRuntimeGetVersion(&v) == cudaSuccess ? v : 0;
}

std::string cuda_runtime_error() {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free error state so later calls start clean
    return std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err) + driver_hint(err);
  }
  if (count == 0) return "no CUDA device";
  return "";
}

void check_cuda(int status, const char* op) {
  const cudaError_t err = static_cast<cudaError_t>(status);
  if (err == cudaSuccess) return;
  throw std::runtime_error(std::string(op) + ": " + cudaGetErrorString(err) + driver_hint(err));
}

CudaDeviceGuard::CudaDeviceGuard(int device, const char* op) {
  check_cuda(cudaGetDevice(&previous_), op);
  if (previous_ != device) {
    check_cuda(cudaSetDevice(device), op);
    changed_ = true;
  }
}

CudaDeviceGuard::~CudaDeviceGuard() {
  if (changed_) cudaSetDevice(previous_);  // a destructor may not throw; the next call reports any failure
}

}  // namespace mvlift
