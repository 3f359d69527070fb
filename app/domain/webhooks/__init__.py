"""Signed webhooks: endpoints subscribed to event types, and their delivery attempts."""
