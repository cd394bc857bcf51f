"""Pieces shared by every AVTS stage: the shard contract, stats, progress display, atomic files, seeds."""
