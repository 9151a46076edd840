"""Delivery: what a digest covers, planning, the delivery store, the send loop and recording."""
