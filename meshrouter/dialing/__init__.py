"""Sans-IO connection-management cores: backoff, target table, accept throttle."""
