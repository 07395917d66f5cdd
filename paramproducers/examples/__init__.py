"""Example param producers (see paramproducers/README_paramproducers.md)."""
