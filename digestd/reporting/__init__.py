"""Reporting: the figures `digestd stats` shows."""
