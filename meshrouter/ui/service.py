"""The UI Service: the status page at ``GET /`` and the picture at ``GET /graph.svg``.

Thin: the page is a constant (``ui.page``), the picture a pure function
(``ui.graph``) of the facts ``ui.facts`` gathers from the router at request
time.  Both are GETs with no side effect; the page's own fetches are
same-origin GETs, which the API guard lets through.
"""

from __future__ import annotations

from typing import Any

import trio

from meshrouter.node.service import ApiRequest, ApiRoute, RawResponse, ServiceBase
from meshrouter.ui.facts import graph_facts
from meshrouter.ui.graph import render_svg
from meshrouter.ui.page import status_page

SVG_TYPE = "image/svg+xml; charset=utf-8"
HTML_TYPE = "text/html; charset=utf-8"


class UiService(ServiceBase):
    """Serves the operator's page and the mesh picture."""

    name = "ui"

    def svg(self) -> str:
        """The mesh picture as this router sees it now."""
        return render_svg(graph_facts(self.context))

    def report(self) -> dict[str, Any] | None:
        return {"page": "/", "picture": "/graph.svg"}

    def api_routes(self) -> list[ApiRoute]:
        return [ApiRoute("GET", "/", self._api_page),
                ApiRoute("GET", "/graph.svg", self._api_graph),
                ApiRoute("GET", "/graph/facts", self._api_facts)]

    async def _api_page(self, request: ApiRequest) -> Any:
        return RawResponse(status_page(), HTML_TYPE)

    async def _api_graph(self, request: ApiRequest) -> Any:
        # Facts are read on the loop (router state); drawing 1,000 peers takes
        # ~0.25 s of CPU, so it runs in a worker thread on that private copy.
        facts = graph_facts(self.context)
        svg = await trio.to_thread.run_sync(render_svg, facts)
        return RawResponse(svg.encode("utf-8"), SVG_TYPE)

    async def _api_facts(self, request: ApiRequest) -> Any:
        """The picture's input as JSON: ``status --graph`` draws it client-side
        (the CLI's client speaks JSON only; ``ui.graph`` is pure and light)."""
        return graph_facts(self.context)
