"""The names of the three checkpoint modes (docs/protocol.md), in a module of
their own so that the command line can offer them without importing the
checkpoint machinery (``minivm run`` of a program that takes no checkpoint
never loads it)."""

#: P2-P11 as designed: a short stop, memory saved in the background.
COW = "cow"
#: The baseline to compare with: the guest stays stopped while everything is copied.
STOP_COPY = "stop-copy"
#: Live migration's way: copy memory in rounds while the guest runs, then stop
#: to copy what the last round left dirty (precopy.py).
PRECOPY = "precopy"
MODES = (COW, STOP_COPY, PRECOPY)
