"""Helpers only the tests use: child processes, a Kafka broker per test, probes, raw servers."""
