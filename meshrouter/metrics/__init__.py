"""Prometheus metrics of a router (``GET /metrics``), collected at scrape time."""
