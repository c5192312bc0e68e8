"""Request bodies: validated with bounded work, the large ones outside the service's process."""
