"""HTTP layer: middleware, dependencies, error handlers and routes."""
