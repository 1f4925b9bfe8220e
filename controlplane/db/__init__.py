"""The control-plane database: tables, engines, migrations, and the stores built on them."""
