"""mmtrack: benchmark model multiplicity for trustworthy ML on MLflow."""

__version__ = "0.1.0"
