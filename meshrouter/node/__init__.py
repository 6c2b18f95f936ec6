"""trio shells: transport, per-connection tasks and the Router that owns them."""
