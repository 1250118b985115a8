"""The aggregator: ingest over gRPC, a buffer of recent batches, REST, metrics."""
