"""The sandbox runner: turns one job into a bubblewrap sandbox and reports its result."""
