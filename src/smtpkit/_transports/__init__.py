"""Transports: how an envelope and its bytes reach a server (or don't)."""
