"""Notifications: webhooks and email about task events.

A task may ask for them (``notify``), and deployment-wide webhook subscriptions receive every
event matching their filters. ``Notifier`` subscribes to the event bus and turns each matching
event into a delivery: a task of an internal type (``tierq.webhook``, ``tierq.email``) run by
the same workers, with the same leases and retries, so a crash never drops one. The senders
(``webhook.py``, ``email.py``) run those tasks; ``service.py`` composes it all.
"""
