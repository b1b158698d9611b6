"""attnhub conformance kit."""
