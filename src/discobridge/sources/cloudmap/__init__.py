"""The Cloud Map source: namespaces as partitions, their instances as endpoints."""
