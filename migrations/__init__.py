"""Alembic revisions for the control-plane database (version table ``mlcp_alembic_version``)."""

# The newest revision: opening a database at it needs no alembic import (a test checks it
# against the scripts; a new revision updates it).
HEAD = "0008_serving_cost"
