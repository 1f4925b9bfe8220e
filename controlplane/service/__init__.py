"""The control plane as every ``mlcp`` command sees it: `ControlService`, run on the stores
(`LocalService`) or sent to the control API with a token (`RemoteService`, ``MLCP_API_URL``).

Nothing is imported here: ``controlplane.service.local`` needs SQLAlchemy, ``.remote`` needs
httpx, and a command loads only the one it uses.
"""
