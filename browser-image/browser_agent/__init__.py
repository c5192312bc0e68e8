"""Browser agent: a small HTTP service around one Playwright Chromium."""
