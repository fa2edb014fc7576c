"""metatrain's environment server: gymnasium environments stepped by a metatrain worker over a pipe.

A worker starts one server per compute thread (``python -m metatrain_envserver --allow MODULE …``) and drives it
with the binary protocol in :mod:`metatrain_envserver.protocol`. Only plain numbers and JSON cross the pipe;
nothing is unpickled, and only modules the worker was started to allow are imported.
"""

from metatrain_envserver.tasks import Task

__all__ = ["Task"]
