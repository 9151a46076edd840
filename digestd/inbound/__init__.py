"""Inbound mail: what comes back (bounces, complaints, unsubscribes by mail, commands).

`process.process_message` is the one entry point every transport (file/pipe, SMTP
listener, IMAP) calls; `addresses.is_ours` tells a transport which recipients to accept.
"""
