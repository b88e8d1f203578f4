"""rnnlab: a vanilla RNN on IMDB, and its limits measured."""
__version__ = "0.1.0"
