"""Correlators: pure deciders that fold calls and SCADA signals into outage incidents."""
