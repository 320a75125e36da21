"""The audit log: who changed what, when, through the API (and later the dashboard)."""
