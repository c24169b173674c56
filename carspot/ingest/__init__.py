"""Sources, safe image normalising, de-duplication and the Kafka producer loop."""
