"""Integrations of fastpool with other tools, one module each, imported only on demand.

Nothing here is imported by ``import fastpool``; each module may import the tool it serves.
"""
