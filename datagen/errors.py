"""The one exception type the CLI turns into a one-line error and a non-zero exit."""


class DatagenError(Exception):
    """A problem the user can fix: bad input, bad config, an unreachable model.

    The message is a single line that names the culprit (a file, a setting, a model).
    """

    exit_code = 1


class Interrupted(DatagenError):
    """The user stopped the command (Ctrl-C); what was finished is kept."""

    exit_code = 130  # the shell's convention for a command ended by SIGINT
