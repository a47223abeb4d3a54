"""Alert delivery: who hears about an `alerts` event, whether it is silenced, and how it is sent.

`config` loads the TOML that names receivers, the shift roster, the routing tree and silences;
`route`, `roster` and `silence` are pure functions of (alert, config, now); `group` holds
alerts per receiver and incident, following merges, until their notification is due (pure,
`now` passed in); `notify` renders and delivers, keeping a `Delivery` record for every
attempt's outcome. Alerts are plain mappings (the decoded JSON of `AlertRaised`), so nothing
here imports the event classes.
"""
