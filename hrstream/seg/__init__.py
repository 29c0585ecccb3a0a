"""hrstream.seg."""
