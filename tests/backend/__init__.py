"""Tests of anyfc/_backend, one file per concern: namespaces, devices, transfers,
kernels, lazy arrays, step compilers, precision."""
