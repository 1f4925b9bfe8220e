"""Alembic revisions for the control-plane database (version table ``mlcp_alembic_version``)."""
