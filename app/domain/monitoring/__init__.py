"""Levels operators scrape: how many runs and deployments are in each state, outbox backlog."""
