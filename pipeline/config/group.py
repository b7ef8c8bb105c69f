"""A group of ``CDRPIPE_*`` settings: fields read from one mapping, errors as one line that says the fix.

Contract: :meth:`SettingsGroup.read` returns the group built from the
mapping's ``CDRPIPE_*`` entries (stripped; blank ones count as unset) and the
defaults, or raises :class:`~pipeline.errors.ConfigError` naming the first
unusable variable, its problem and the default, quoting the value only where
:func:`~pipeline.config.fields.shown` allows. A field's variable is
``CDRPIPE_`` and its name in capitals unless it has an alias. A group never
reads ``os.environ``, a ``.env`` file or a secrets directory by itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Self

from pydantic import AliasGenerator, ValidationError
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from pipeline.config.fields import shown, spelled
from pipeline.errors import ConfigError

PREFIX = "CDRPIPE_"


class _Variables(EnvSettingsSource):
    """The ``CDRPIPE_*`` entries of one mapping, stripped; blank ones count as unset."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        self._env = env
        super().__init__(settings_cls, case_sensitive=True)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {
            name: value.strip()
            for name, value in self._env.items()
            if name.startswith(PREFIX) and value.strip()
        }


class SettingsGroup(BaseSettings):
    """A group of settings; :meth:`read` is the only way its fields come from variables."""

    model_config = SettingsConfigDict(
        frozen=True,
        case_sensitive=True,
        enable_decoding=False,
        alias_generator=AliasGenerator(validation_alias=lambda name: PREFIX + name.upper()),
        validate_by_name=True,
        validate_by_alias=True,
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)  # no os.environ, .env or secrets directory behind load_settings' back

    @classmethod
    def read(cls, env: Mapping[str, str]) -> Self:
        """The group from ``env``'s ``CDRPIPE_*`` variables and the defaults."""
        try:
            return cls(**_Variables(cls, env)())
        except ValidationError as exc:
            raise ConfigError(cls._problem(exc.errors()[0])) from None

    @classmethod
    def variables(cls) -> dict[str, str]:
        """Field name to variable name."""
        return {name: str(field.validation_alias) for name, field in cls.model_fields.items()}

    @classmethod
    def default_text(cls, name: str) -> str:
        """The field's default as its variable would spell it."""
        field = cls.model_fields[name]
        return spelled(field.get_default(call_default_factory=True), field.metadata)

    @classmethod
    def _problem(cls, error: ErrorDetails) -> str:
        variable = str(error["loc"][0]) if error["loc"] else "?"
        name = next((name for name, var in cls.variables().items() if var == variable), None)
        cause = error.get("ctx", {}).get("error")
        problem = str(cause) if isinstance(cause, ValueError) else error["msg"]
        value = error["input"]
        quoted = shown(value) if isinstance(value, str) else "<not text>"
        default = cls.default_text(name) if name else "(none)"
        fix = "or leave it unset" if default == "(none)" else f"or leave it unset for the default: {default}"
        return f"{variable}={quoted} is not usable: {problem} ({fix})"
