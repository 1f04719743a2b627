"""Rendering graphs with Graphviz."""

from .render import ROLE_COLOURS, SOURCE_COLOURS, render, to_dot, write_dot

__all__ = ["ROLE_COLOURS", "SOURCE_COLOURS", "render", "to_dot", "write_dot"]
