"""People who sign in to the dashboard: their account, role and password."""
