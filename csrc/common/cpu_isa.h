// Run-time choice of the CPU instruction set for the kernels that are compiled twice (baseline x86-64 and
// AVX2 + FMA), as NumPy and ATen do: the package is built once, for every x86-64 machine, and the wider
// vector path runs where the processor has it.
//
// The choice is made once per process: the environment variable MVLIFT_CPU_ISA ("baseline" or "avx2")
// forces it, otherwise the best level the processor supports is taken. set_cpu_isa() changes it at run
// time (tests use it to run both paths). Results of the two paths agree to rounding: the AVX2 build may
// contract a*b+c into one FMA (one rounding instead of two).
#pragma once
#include <string>

namespace mvlift {

enum class CpuIsa { kBaseline = 0, kAvx2 = 1 };

// True when this build contains the AVX2 path and the processor supports AVX2 and FMA.
bool cpu_supports_avx2();
// The level the kernels use now.
CpuIsa cpu_isa();
// "baseline" or "avx2".
const char* cpu_isa_name(CpuIsa isa);
// Selects a level by name ("auto", "baseline" or "avx2"); throws std::invalid_argument for an unknown name or
// std::runtime_error for a level the build or the processor lacks.
void set_cpu_isa(const std::string& name);

}  // namespace mvlift
