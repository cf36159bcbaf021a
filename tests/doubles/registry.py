"""Registry fixture: filled in by the OCI work."""
