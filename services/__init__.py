"""The four services of portfolio-sync, and the CLI that runs them."""
