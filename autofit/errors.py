"""Errors that autofit reports to a person as one line (the CLI prints them without a traceback)."""


class AutofitError(Exception):
    """Bad input or an impossible request: printed as one line on stderr, exit code 2."""

    exit_code = 2


class InvalidConfigError(AutofitError):
    """A configuration breaks a validity rule; `rule` names it."""

    def __init__(self, rule: str, message: str):
        super().__init__(f"invalid configuration: {message} (rule {rule})")
        self.rule = rule
