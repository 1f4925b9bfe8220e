"""Errors raised by the serving tier.

ServingError     root; the serving issue adds its leaves
"""

from __future__ import annotations


class ServingError(Exception):
    """Root of every error the serving tier raises."""
