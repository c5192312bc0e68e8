"""Browser sessions: the registry, local agent placement and the agent client."""
