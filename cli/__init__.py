"""The `outage` command line: run the service, replay files, print schemas."""
