"""The HTTP API: users, portfolios, broker accounts, write-only credentials, holdings and "sync now"."""

from services.api.app import create_app
from services.api.context import ApiResources

__all__ = ["ApiResources", "create_app"]
