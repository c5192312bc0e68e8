"""Sandbox controller: the FastAPI service in front of the execution and session backends."""
