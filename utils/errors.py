"""User mistakes: exceptions whose message names the thing (file, key, video, value) and the fix.

Every tool ends on one of them with one line `error: <message>` and exit status 2 (utils/cli.py);
any other exception is a bug and keeps its traceback. Each class also derives from the builtin a
caller would catch (an InputError is a ValueError), so library code and tests can treat them as
before."""


class UserError(Exception):
    """Base class: a mistake in the user's input (config, command line, files, data), not a bug."""


class InputError(UserError, ValueError):
    """A value, shape, range or file content that cannot be used."""


class NotFoundError(UserError, FileNotFoundError):
    """A path that does not exist."""


class ExistsError(UserError, FileExistsError):
    """An output that exists and would be overwritten."""


class MissingKeyError(UserError, KeyError):
    """A video, key or entry that a file lacks (str() is the message, not KeyError's quoted
    repr)."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""


class OutOfRangeError(UserError, IndexError):
    """An index (segment, frame) outside what a file holds."""


class DeviceError(UserError, RuntimeError):
    """A device the config asks for that this machine does not have."""
