"""The one exception type the CLI turns into a one-line error and a non-zero exit."""


class DatagenError(Exception):
    """A problem the user can fix: bad input, bad config, an unreachable model.

    The message is a single line that names the culprit (a file, a setting, a model).
    """
