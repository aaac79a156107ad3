"""llmtap's benchmark suite: ``benchmarks/run`` (see ``benchmarks/README.md``)."""
