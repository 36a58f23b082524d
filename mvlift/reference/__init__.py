"""Plain-PyTorch references of every op in :mod:`mvlift.ops`: the test oracle, the CPU fallback and the
baseline that benchmarks compare against. Same math, no fusion, float64-capable, differentiable."""
