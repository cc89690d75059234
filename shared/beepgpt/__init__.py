"""BeepGPT's shared package: the contracts between services and the plumbing they all use."""

__version__ = "0.1.0"
