"""Imported first by the crawl's fork server: from then on it ignores SIGINT, and so does
every worker it forks (they start with its handlers).

Ctrl-C on a terminal sends SIGINT to the whole process group. The fork server ignores it
itself only once its preload is imported (half a second of pydantic and pyarrow), and a
KeyboardInterrupt meanwhile printed a traceback from multiprocessing/forkserver.py, though
the crawl handles the shutdown and its workers end with it (``pipeline._die_with_parent``).
A module of its own, importing nothing else, so the window before it runs stays the
interpreter's start-up alone; the crawl cannot ignore the signal for its child instead, as
a handler can only be set from the main thread and a scheduled crawl runs in another.
"""

import signal

signal.signal(signal.SIGINT, signal.SIG_IGN)
