"""Code contexts: stateful interpreters, each in a sandbox of its own for its whole life."""
