"""pytest plugin: --attnhub-backend NAME."""
