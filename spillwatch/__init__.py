"""SpillWatch core: the contracts every stage shares (events, topics, settings) and the command line."""

__version__ = "0.1.0"
