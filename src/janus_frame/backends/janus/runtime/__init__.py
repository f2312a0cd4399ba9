"""What runs a compiled graph: ``graph`` (the per-graph wrapper and the
CompiledGraph), ``training`` (one autograd.Function per training graph) and
``grad_accumulation`` (parameter gradients summed once per backward pass)."""
