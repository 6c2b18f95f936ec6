"""Built-in DNS: gossiped records CRDT, pure resolver, trio server and service."""
