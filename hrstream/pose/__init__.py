"""hrstream.pose."""
