"""tuneloop."""
