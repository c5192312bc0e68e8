"""Kubernetes placement: manifests as pure builders, and the one edge module that calls the API."""
