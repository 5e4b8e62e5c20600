"""`make bench`: benchmarks (not timed tests) of the engine, the operator and a real peer."""
