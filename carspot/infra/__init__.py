"""Starting real Kafka, PostgreSQL and Redis on loopback without Docker."""
