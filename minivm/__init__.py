"""minivm: a tiny bytecode machine whose checkpoint/resume protocol is built in."""

__version__ = "0.3.0"
