"""Error types shared across the pipeline.

Every message carried by these errors is safe to log: callers never put a raw
phone number or key material into them.
"""


class ConfigError(Exception):
    """The worker's configuration cannot be used; the message says what to fix."""


class KeyringError(ConfigError):
    """The keyring file cannot be used; the message names the file and the fix."""
