"""The one exception type a user can cause; the CLI prints its message as one line."""


class RttagError(Exception):
    """A user-facing error: bad device, bad file, bad model, bad config.

    The CLI prints ``rttag: error: <message>`` on stderr and exits with ``exit_code``.
    """

    exit_code = 2
