"""The command line: ``ntkdiagrams derive | evaluate | sample | compare | critical``."""
from .main import main

__all__ = ["main"]
