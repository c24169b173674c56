"""Settings, the Post message, the Kafka transport, the analysis worker and dead letters, and the wiring of the
parts (embedded and distributed, the ingest servers)."""
