"""Kubernetes API double: filled in by the cluster work."""
