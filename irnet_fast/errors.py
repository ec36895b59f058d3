"""Errors in the user's input (a missing file, a bad value or option, an unusable backend).

The CLI prints an :class:`InputError` as one line (exit status 2); any other exception is a bug or
an environment problem and keeps its traceback. Each subclass is also the builtin type callers
catch (``ValueError``, ``FileNotFoundError``, ``RuntimeError``, ``OSError``, ``ImportError``).
"""


class InputError(Exception):
    """Marks an error in the user's input: its message says what is wrong and how to fix it."""


class InputValueError(InputError, ValueError):
    pass


class InputFileNotFoundError(InputError, FileNotFoundError):
    pass


class InputRuntimeError(InputError, RuntimeError):
    pass


class InputOSError(InputError, OSError):
    pass


class MissingDependencyError(InputError, ImportError):
    pass
