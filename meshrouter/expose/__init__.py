"""The host on its own overlay: ``meshrouter expose`` / ``hide`` (Weave's ``weave expose``)."""
