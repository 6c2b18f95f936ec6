"""meshrouter: a Weave-style overlay network for containers, built on trio."""

__version__ = "0.1.0"
