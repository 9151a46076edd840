"""Inbound mail: what comes back (bounces, complaints, unsubscribes, commands)."""
