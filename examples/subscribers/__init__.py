"""Subscribers of portfolio-sync's topics, as another service would write them (docs/events.md)."""
