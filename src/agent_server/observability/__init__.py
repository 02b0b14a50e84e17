"""Logging and metrics: leaves that every layer may import."""
