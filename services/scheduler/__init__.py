"""The scheduler: finds due sync schedules and requests their syncs."""
