"""blueprintd: a GitOps fleet operator that turns versioned Blueprints into consistent GPU clusters."""

__version__ = "0.1.0"
