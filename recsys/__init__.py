"""Video recommendation embedding engine: the domain core shared by every other package."""

__version__ = "0.1.0"
