"""Rendering graphs with Graphviz, the pass-by-pass HTML report, and inline display in notebooks."""

from ..graph import Graph, VizError
from ..graph.ir import set_svg_renderer
from ..passes.manager import set_dot_writer
from .render import (
    DOT_TIMEOUT,
    EDGE_LABEL_LIMIT,
    RENDER_LIMIT,
    ROLE_COLOURS,
    SOURCE_COLOURS,
    drawn_units,
    render,
    to_dot,
    to_svg,
    write_dot,
)
from .report import report
from .scopes import assign_scopes, name_scope
from .timeline import live_bytes, timeline_svg

NOTEBOOK_MAX_NODES = 150  # graphs shown inline in a notebook are summarised beyond this many nodes


def notebook_svg(graph: Graph) -> str | None:
    """The SVG a notebook shows for `graph`, summarised to NOTEBOOK_MAX_NODES; None (the notebook
    shows text) without Graphviz, or when the graph has too few name scopes to summarise that far
    (draw it with `render(graph, "g.svg", max_nodes=...)`: Graphviz takes seconds per hundred nodes)."""
    if drawn_units(graph, max_nodes=NOTEBOOK_MAX_NODES) > NOTEBOOK_MAX_NODES:
        return None
    try:
        return to_svg(graph, max_nodes=NOTEBOOK_MAX_NODES)
    except VizError:
        return None


set_svg_renderer(notebook_svg)
set_dot_writer(lambda graph, path, outputs: write_dot(graph, path, outputs=outputs))

__all__ = [
    "DOT_TIMEOUT",
    "EDGE_LABEL_LIMIT",
    "NOTEBOOK_MAX_NODES",
    "RENDER_LIMIT",
    "ROLE_COLOURS",
    "SOURCE_COLOURS",
    "assign_scopes",
    "drawn_units",
    "live_bytes",
    "name_scope",
    "notebook_svg",
    "render",
    "report",
    "timeline_svg",
    "to_dot",
    "to_svg",
    "write_dot",
]
