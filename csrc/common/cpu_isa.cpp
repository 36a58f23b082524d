#include "common/cpu_isa.h"

#include <atomic>
#include <cstdlib>
#include <stdexcept>

namespace mvlift {
namespace {

CpuIsa best_isa() { return cpu_supports_avx2() ? CpuIsa::kAvx2 : CpuIsa::kBaseline; }

CpuIsa parse(const std::string& name) {
  if (name == "auto") return best_isa();
  if (name == "baseline") return CpuIsa::kBaseline;
  if (name == "avx2") {
    if (!cpu_supports_avx2())
      throw std::runtime_error(
          "cpu isa 'avx2' is unavailable: this build has no AVX2 path or the processor lacks AVX2/FMA; use "
          "'baseline' or 'auto'");
    return CpuIsa::kAvx2;
  }
  throw std::invalid_argument("cpu isa must be 'auto', 'baseline' or 'avx2', got '" + name + "'");
}

CpuIsa initial_isa() {
  const char* env = std::getenv("MVLIFT_CPU_ISA");
  if (env == nullptr || *env == '\0') return best_isa();
  try {
    return parse(env);
  } catch (const std::exception& e) {
    throw std::invalid_argument(std::string("environment variable MVLIFT_CPU_ISA='") + env + "': " + e.what());
  }
}

std::atomic<int> g_isa{-1};

}  // namespace

bool cpu_supports_avx2() {
#if defined(MVLIFT_HAVE_AVX2) && (defined(__GNUC__) || defined(__clang__))
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

CpuIsa cpu_isa() {
  int v = g_isa.load();
  if (v < 0) {
    v = static_cast<int>(initial_isa());
    g_isa.store(v);
  }
  return static_cast<CpuIsa>(v);
}

const char* cpu_isa_name(CpuIsa isa) { return isa == CpuIsa::kAvx2 ? "avx2" : "baseline"; }

void set_cpu_isa(const std::string& name) { g_isa.store(static_cast<int>(parse(name))); }

}  // namespace mvlift
