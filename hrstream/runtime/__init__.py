"""hrstream.runtime."""
