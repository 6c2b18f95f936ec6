"""The HTTP control and status API (server) and the client the CLI uses."""
