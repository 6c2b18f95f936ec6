"""The operator's views: the status page (``GET /``) and the mesh picture (``GET /graph.svg``)."""
