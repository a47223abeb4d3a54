"""Who may do what: roles and permissions, users and API keys, sessions, rate limits."""
