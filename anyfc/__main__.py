"""``python -m anyfc`` prints the version and what each backend can use here."""

from ._info import info

if __name__ == "__main__":
    info()
