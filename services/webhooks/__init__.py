"""The webhook delivery service: turns the events of `holdings.changes` and `sync.failures` into
deliveries to the endpoints users registered, and sends them, signed, with retries."""
