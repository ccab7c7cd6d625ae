"""Built-in broker adapters, one module each."""
