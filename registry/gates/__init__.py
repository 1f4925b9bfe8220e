"""Evaluation gates: each judges a candidate version against the policy."""
