"""The ledger: consumes snapshots and failures into the database, then announces what changed."""
