"""hrstream.io."""
