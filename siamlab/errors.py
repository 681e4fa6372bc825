"""Exceptions for problems the user can fix; the CLI prints them without a traceback (exit 2)."""


class SiamlabError(Exception):
    """Base class: the message says what is wrong and what to do about it."""


class ConfigError(SiamlabError):
    """A study file, profile or ``--set`` override is invalid."""


class DataError(SiamlabError):
    """A dataset is missing, has the wrong layout, or holds unreadable samples."""


class CorruptImageError(DataError):
    """One image file cannot be decoded."""


class ResultsError(SiamlabError):
    """A results folder or checkpoint cannot be read, written or resumed."""
