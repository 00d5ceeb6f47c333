"""Fixtures and helpers for the device_farm tests (real sshd, real PostgreSQL)."""
