"""The one exception type for errors a user can cause."""


class SpadeError(Exception):
    """A user-fixable problem: bad file, bad label value, missing weights, wrong config.

    The message names the file or key at fault and says what to do. The CLI prints it
    without a traceback and exits with status 2.
    """
