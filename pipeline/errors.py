"""The errors every stage shares, under one base.

Every message carried by these errors is safe to log: callers never put a raw
phone number, a pseudonym or key material into them. The ``cdrpipe`` command
catches :class:`CdrpipeError` and prints its message as one line.
"""


class CdrpipeError(Exception):
    """Base of cdrpipe's own errors; the message says what happened and, where it can, what to fix."""


class ConfigError(CdrpipeError):
    """The configuration cannot be used (a setting, a mapping, a file it names); the message says the fix."""


class KeyringError(ConfigError):
    """The keyring file cannot be used; the message names the file and the fix."""


class RequestRefusedError(CdrpipeError):
    """A data-subject request or DPO command is refused as given; the message says why, naming no input."""


class BrokerUnreachableError(CdrpipeError):
    """The Kafka broker does not answer; the message names the address, its setting and the fix."""
