"""hrstream.models."""
