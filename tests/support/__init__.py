"""Helpers the tests share: stacks, runners, the fake modem, audio checks, sample data."""
