"""Plain types every layer shares: no project imports, so everything can import them."""
