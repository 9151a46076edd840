"""Subscribers: their records, lifecycle, consent, votes, opt-in, bounce policy and CSV files."""
