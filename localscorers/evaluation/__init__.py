"""Running scorers: the scheduler shared by online scoring and backfill, and scorer calls."""
