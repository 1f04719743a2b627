"""The version of gradkiln, in a module of its own so that any layer can read it without importing
the package face (`gradkiln/__init__.py`, which loads the public API)."""

__version__ = "0.1.0"
