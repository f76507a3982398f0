"""Checks of the whole project: every example runs, no import cycle, the math modules
import no array library."""
