"""Deploying bundles to devices: over SSH (ssh.py), with a stdlib-only helper run on the device (remote.py)."""
