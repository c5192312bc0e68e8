"""Executions: the backend protocol, the local backend, admission control and results."""
