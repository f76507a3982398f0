"""Tests of anyfc/layers/, one file per module."""
