"""How every DPO command names one data subject: ``--number``, ``--agent`` or ``--pseudonym``.

Contract: :func:`subject_options` gives every command that names a subject
(``erase``, ``export``, ``restrict``, ``unrestrict``, ``object``,
``withdraw-objection``) the same options, and :func:`named_subject` is the one
place that turns them into a :class:`NamedSubject`, before anything is sent or
read:

* exactly one of ``--number``, ``--agent`` and ``--pseudonym``;
* a ``--number`` is read in ``--region`` (default ``CDRPIPE_REGION``); digits
  that are also another person's international number without its ``+`` are
  refused, naming both readings, until ``--region``, a ``+`` or ``--yes``
  settles which; only a subscriber number or an extension is a subject;
* an extension or ``--agent`` needs ``--tenant`` (a source, or its
  ``CDRPIPE_TENANTS`` tenant), and is searched within every tenant its rows
  may carry (:func:`~pipeline.keys.pseudonym.tenants_under`); a ``--tenant``
  that could not be a record's source is refused without being quoted or
  shown;
* the resolution line (``subject: +32 4xx xx xx xx (region BE, MOBILE)``, or the
  extension or agent with its tenant and the tenants searched) goes to
  standard error, never a log line, a request or a receipt; when standard
  error is not a terminal (:func:`on_terminal`: redirected to a file, or a
  job's collected output) it and the ambiguity refusal name the kind, region
  and line type of each reading, never the number, extension or agent id.

What a request carries (:meth:`NamedSubject.carried`) is the subject's
pseudonyms under every key of the keyring, each with the tenant it was computed
within, and the tenant as given (a source or a tenant: the worker maps it with
its own ``CDRPIPE_TENANTS``, and refuses the request if the pseudonyms miss a
tenant its mapping says the rows may carry), or a pseudonym as given: never the
number, the extension or the agent id, so the request topics hold none. Refusals are
``click.UsageError`` (exit status 2, one line).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from pipeline.cli.group import DpoContext
from pipeline.config.fields import region_code
from pipeline.config.settings import Settings
from pipeline.lifecycle.requests.erasure_request import SubjectKind, SubjectPseudonym, tenant_problem
from pipeline.lifecycle.subject import Subject, subject_from_agent, subject_from_party, subject_from_pseudonym
from pipeline.numbers.msisdn import NumberKind, PartyNumber
from pipeline.numbers.resolution import describe, resolve_number

F = TypeVar("F", bound=Callable[..., Any])

_TENANT_HINT = "(the records' source, or its CDRPIPE_TENANTS tenant)"


def subject_options(command: F) -> F:
    """Add the options that name a data subject, the same for every command that takes one."""
    options = [
        click.option("--number", help="The subject's phone number or extension, in any spelling."),
        click.option("--agent", help="The subject as a contact-centre agent id (an employee)."),
        click.option("--pseudonym", help="The subject as a pseudonym (32 hex characters) of a number, "
                     "extension or agent."),
        click.option("--region", default=None, help="Read a national --number in this ISO 3166 region "
                     "(default: CDRPIPE_REGION)."),
        click.option("--tenant", default=None, help=f"The tenant of an extension --number or an --agent "
                     f"{_TENANT_HINT}: they are pseudonymised per tenant."),
        click.option("--yes", is_flag=True, help="Confirm the national reading of a --number that is also "
                     "valid as an international number without its +."),
    ]  # fmt: skip
    for option in reversed(options):
        command = option(command)
    return command


@dataclass(frozen=True, slots=True)
class NamedSubject:
    """The subject of the options: its kind, what a request carries, its tenant, and its pseudonyms.

    ``value`` is the resolved form (E.164 number, extension, agent id, lower-case pseudonym);
    ``tenant`` the source or tenant an extension or agent was named with (None for the others);
    ``subject`` the pseudonyms under every key, within every tenant of ``subject.tenants_searched``.
    """

    kind: SubjectKind
    value: str
    tenant: str | None
    subject: Subject

    def carried(self) -> dict[str, Any]:
        """The fields a request names the subject by: its pseudonyms under every key of the keyring,
        each with the tenant it was computed within, and the tenant as given (so the request topic
        holds no number), or a pseudonym as given (its key is not known)."""
        if self.kind == "pseudonym":
            return {"subject": self.value, "subject_kind": "pseudonym"}
        tenants = self.subject.pair_tenants or (None,) * len(self.subject.pairs)
        pseudonyms = [
            SubjectPseudonym(key_id=pair.key_id, pseudonym=pair.pseudonym, tenant=tenant)
            for pair, tenant in zip(self.subject.pairs, tenants, strict=True)
        ]
        return {"subject_kind": "pseudonyms", "pseudonyms": pseudonyms, "tenant": self.tenant}


def named_subject(context: DpoContext, options: Mapping[str, Any]) -> NamedSubject:
    """The subject of :func:`subject_options`' values (see the module contract)."""
    settings = context.settings
    given: list[tuple[SubjectKind, str | None]] = [
        ("number", options["number"]),
        ("agent", options["agent"]),
        ("pseudonym", options["pseudonym"]),
    ]
    chosen = [(kind, value) for kind, value in given if value is not None]
    if len(chosen) != 1:
        raise click.UsageError("give exactly one of --number, --agent or --pseudonym")
    kind, value = chosen[0]
    assert value is not None
    tenants = dict(settings.numbers.tenants)
    tenant = _given_tenant(options["tenant"])
    if kind == "pseudonym":
        subject = subject_from_pseudonym(value)
        return NamedSubject("pseudonym", subject.pairs[0].pseudonym, None, subject)
    if kind == "agent":
        if not tenant:
            raise click.UsageError(
                f"an agent id is only unique within its tenant: give --tenant {_TENANT_HINT}"
            )
        subject = subject_from_agent(value, context.keys(), tenant, tenants)
        _echo_subject(f"agent {value.strip()}" if on_terminal() else "an agent id", subject)
        return NamedSubject("agent", value.strip(), tenant, subject)
    party = _resolved_party(settings, value, options["region"], tenant, yes=options["yes"])
    scope = tenant if party.kind is NumberKind.EXTENSION else None
    subject = subject_from_party(party, context.keys(), scope, tenants)
    _echo_subject(_described(party), subject)
    return NamedSubject("number", str(party.value), scope, subject)


def on_terminal() -> bool:
    """Whether standard error is a terminal: only there is the subject's number shown."""
    return click.get_text_stream("stderr").isatty()


def _described(party: PartyNumber) -> str:
    """The reading of a ``--number``: in full on a terminal, else without its digits."""
    if on_terminal():
        return describe(party)
    if party.kind is NumberKind.EXTENSION:
        return "an extension"
    return f"a {party.line_type} number of region {party.region}"


def _given_tenant(given: str | None) -> str | None:
    """The ``--tenant`` as given, stripped, or a one-line refusal that does not quote it.

    Sent as given rather than as the DPO's ``CDRPIPE_TENANTS`` maps it: the worker maps a source
    with its own, and searching a source's name finds everything its tenant's name does and
    also the rows of a worker that does not map the source (yet, or any more).
    """
    if given is None:
        return None
    tenant = given.strip()
    problem = tenant_problem(tenant)
    if problem is not None:
        raise click.BadParameter(problem, param_hint="--tenant")
    return tenant


def _resolved_party(
    settings: Settings, number: str, region: str | None, tenant: str | None, *, yes: bool
) -> PartyNumber:
    """The subject's number as the store knows it, or a one-line refusal."""
    try:
        chosen_region = region_code(region) if region is not None else settings.numbers.region
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--region") from None
    resolution = resolve_number(number, chosen_region, settings.numbers.extension_digits)
    party = resolution.party
    if party.kind not in (NumberKind.E164, NumberKind.EXTENSION):
        raise click.UsageError(f"--number is not a subscriber number or extension (it is {party.kind.value})")
    if resolution.ambiguous and not yes:
        others = "; ".join(_described(other) for other in resolution.alternatives)
        raise click.UsageError(
            f"--number is ambiguous: as a national number of {chosen_region} it is {_described(party)}; "
            f"as an international number without its + it is {others}. Give it with + or 00, "
            "or its country with --region, or confirm the national reading with --yes"
        )
    if party.kind is NumberKind.EXTENSION and not tenant:
        raise click.UsageError(f"an extension is only unique within its tenant: give --tenant {_TENANT_HINT}")
    return party


def _echo_subject(described: str, subject: Subject) -> None:
    """The resolution line, on standard error (the number only on a terminal): never a log line."""
    searched = subject.tenants_searched
    where = f" at tenant {searched[0]}" if searched else ""
    if len(searched) > 1:
        # a source's rows from before CDRPIPE_TENANTS mapped it carry the source's own tenant
        where += f" (searched within tenants {', '.join(searched)}: rows from before the mapping too)"
    hidden = "" if on_terminal() else " (the subject is shown on a terminal only)"
    click.echo(f"subject: {described}{where}{hidden}", err=True)
