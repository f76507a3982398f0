"""The test suite (tests/README.md): a package, so that test files in different folders
may share a name, and the shared references and helpers import as ``tests.references``
and ``tests.helpers``."""
