"""Drift statistics and mergeable profiles (pure numpy/scipy; no Django, no project imports)."""
