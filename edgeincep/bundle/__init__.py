"""Device bundles: the generic writer (writer.py) and one module per device family."""
