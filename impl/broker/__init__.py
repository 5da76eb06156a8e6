"""The broker: Kafka-protocol server, partitions, producer state and its process."""
