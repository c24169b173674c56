"""Settings, the Post message, Kafka wiring, the analysis worker and the `carspot` CLI."""
