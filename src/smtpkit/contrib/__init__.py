"""Integrations with other frameworks, one subpackage each (``smtpkit.contrib.django``).

Each subpackage imports its framework, so it is imported only on purpose:
``import smtpkit`` never imports anything from here, and the framework stays an
optional dependency (an extra such as ``pysmtpkit[django]``).
"""
