// The AVX2 + FMA copy of the CPU triangulation: compiled with -mavx2 -mfma on x86-64 only (CMakeLists.txt), and
// called by triangulate_cpu.cpp when the processor supports both (common/cpu_isa.h). The namespace must be
// set before any include (common/device.h explains why).
#define MVLIFT_ISA_NAMESPACE isa_avx2
#include "triangulate/triangulate_cpu_impl.h"
