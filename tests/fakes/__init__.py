"""Local fake servers reproducing each broker's published API, with sample payloads from its docs in data/."""
