"""The C code generator: ``kernel`` (kernels and segment entry points),
``outer`` (column reductions), ``expr`` (expressions and loop bodies),
``stages`` (latency stages of long inner loops) and ``prelude`` (the math
library every translation unit starts with)."""
