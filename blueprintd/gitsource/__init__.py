"""gitsource."""
