"""Graph runners: one per runtime behind `GraphRunner` (see base.py). Importing this package
imports no torch; each runtime's module is imported only when that runner is opened."""

from f2i_mobile.runners.base import GraphRunner

__all__ = ["GraphRunner"]
