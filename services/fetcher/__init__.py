"""The fetcher: consumes sync requests of one broker, runs its adapter, publishes snapshots or failures."""
