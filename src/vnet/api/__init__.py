"""REST API (FastAPI) over the controller."""

from .app import create_app

__all__ = ["create_app"]
