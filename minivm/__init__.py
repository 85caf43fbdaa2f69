"""minivm: a tiny bytecode machine whose checkpoint/resume protocol is built in.

``import minivm`` is the Python API (minivm/api.py, docs/api.md):
``minivm.run``, ``minivm.boot``, ``minivm.restore``, ``minivm.assemble``,
``minivm.load``, and the classes ``VM``, ``Result``, ``Fault``,
``MinivmError``, ``GuestFault``, ``Image``. They are imported on first use
(PEP 562), so ``import minivm`` itself, and the ``minivm`` command, load
nothing more than they need.
"""

from .version import __version__

_API = ("assemble", "load", "boot", "run", "restore", "VM", "Result", "Fault", "MinivmError",
        "GuestFault", "Image")

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        from . import api
        return getattr(api, name)
    raise AttributeError(f"module 'minivm' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_API))
