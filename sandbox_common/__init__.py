"""Security primitives shared by the controller, the runner and the browser agent (stdlib only)."""
