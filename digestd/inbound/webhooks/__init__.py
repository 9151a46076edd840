"""Provider webhooks (README "Provider webhooks"): each provider's signature check and
payload reading, the replay record, and the events they feed into the bounce policy and
the inbound record (`events`). The HTTP routes are `digestd.web.webhooks`."""
