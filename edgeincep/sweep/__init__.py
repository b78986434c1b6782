"""Recipe sweeps: models x targets x recipe variants as ordinary builds + validations, on Ray."""
