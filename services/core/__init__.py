"""Shared library of the Tollgate services: server bootstrap, errors, logging, clock."""
