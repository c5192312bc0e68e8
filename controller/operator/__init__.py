"""The kopf operator of browser sessions: thin handlers over pure decisions."""
