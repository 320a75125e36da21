"""Accounts and their API keys: who is calling, and the dependency that says so."""
