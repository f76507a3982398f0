"""Tests of anyfc/training/, one file per module."""
