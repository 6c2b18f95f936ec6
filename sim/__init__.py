"""In-process multi-node simulator: real Routers over a simulated network and clock."""
