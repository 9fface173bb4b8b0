"""The kit's one error type for input a user can fix: a file, a line, a key or a value.

Readers, feature stores, the extractor and the trainer's data checks raise subclasses of :class:`InputError` with a
message naming the file and line (or key) and the reason. ``tvgkit.cli.main`` prints exactly these (and
:class:`tvgkit.config.ConfigError`, missing files) as one ``error:`` line with exit status 2; any other exception is
a bug in the kit and keeps its traceback. It subclasses ValueError, so code that caught ValueError still does.
"""

from __future__ import annotations


class InputError(ValueError):
    """Input the user can fix; the message names where (file and line, or key) and why."""
