"""IP address management: the ring CRDT, consensus founding, allocation."""
