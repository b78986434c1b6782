"""Validation on a fleet of real boards over SSH: the inventory, the shard queue and the run."""
