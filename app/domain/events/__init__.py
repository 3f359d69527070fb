"""The event log: every state change, written in the transaction that makes it."""
