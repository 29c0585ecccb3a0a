"""hrstream.track."""
