"""Read models built from the incident stream."""
