"""The ECS source: clusters as partitions, tasks read incrementally, immutable facts cached."""
