"""Streams: the faust app, its HTTP API and the embedded broker; the I/O edge of the service."""
