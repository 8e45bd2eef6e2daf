"""Functional tests of smtpkit against a private Postfix instance (see mta.py)."""
