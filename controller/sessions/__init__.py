"""Sessions of every kind (browser sessions, code contexts): the machinery they share."""
