"""Internal helpers: no stability guarantees."""
