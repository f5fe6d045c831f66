"""watcher: watch news feeds for tracked speakers and themes, and alert at once."""

__version__ = "0.1.0"
