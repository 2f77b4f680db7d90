"""Loaders: one per official file layout, all returning lists of `Example`."""
