"""Code generation from a schedule: C with OpenMP for CPU tensors (``c``),
Triton for CUDA tensors (``triton``)."""
