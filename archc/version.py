"""The package version (its own module: back-ends stamp it without importing the API)."""

__version__ = "0.1.0"
