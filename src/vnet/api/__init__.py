"""REST API (FastAPI) over the controller."""

from .app import create_app, serve

__all__ = ["create_app", "serve"]
