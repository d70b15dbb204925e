"""devfleet."""
