"""octoproto.adapters: everything that touches the OS.

The trio, asyncio and blocking-socket adapters, the command line and the I/O
side of the simulated servers. Installed as ``octoproto.adapters``; each
adapter only moves bytes, time and events between the OS and the pure core.
"""
