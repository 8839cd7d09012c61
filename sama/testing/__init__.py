"""Generators and fetchers of test material (sample media, real footage) for tests and the demo."""
