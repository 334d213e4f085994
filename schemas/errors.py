"""The one error type a user can act on: its message is a single line naming the file,
folder or config key and what is wrong. The CLI prints it as is (no traceback) and the
flow ends Failed with it as the message; anything else is a bug and keeps its traceback."""


class UserError(Exception):
    """A problem with the inputs, the config or the output folder, not with the code."""
