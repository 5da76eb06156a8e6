"""Partition logs on disk in Kafka's format: record batches, segments, indexes, recovery."""
