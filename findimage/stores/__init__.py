"""Where documents live: the protocol both stores implement, and the stores below it."""
