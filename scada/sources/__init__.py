"""One adapter per control-system protocol, each a `Source` (see `base`)."""
