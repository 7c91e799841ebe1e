"""ntkdiagrams: Feynman diagrams for the finite-width statistics of deep networks.

(Public API is assembled here; see the README.)
"""
__version__ = "0.1.0"
