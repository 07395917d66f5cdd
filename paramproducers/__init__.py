"""paramproducers package."""
