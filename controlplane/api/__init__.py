"""The control-plane REST API (FastAPI). ``mlcp api`` serves it with uvicorn."""
