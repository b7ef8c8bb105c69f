"""What a PBX's dialplan says about a call's direction, for formats that carry no direction.

Contract: :func:`dialplan_direction` reads the dialplan context a call ran in, the channel it came
from and the trunk it was dialled to, and returns ``inbound``, ``outbound`` or ``internal``, or
None when none of them tells (the decoder then falls back to the shape of the parties). The caller
id a PBX presents says nothing reliable: many present their DID or a mobile number on outbound
calls, which is why the dialplan comes first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

DialplanDirection = Literal["inbound", "outbound", "internal"]


@dataclass(frozen=True, slots=True)
class Dialplan:
    """The contexts and trunks of a PBX (settings ``CDRPIPE_ASTERISK_*``, FreePBX's by default).

    An empty dialplan tells nothing: every call falls back to the shape of its parties.
    """

    internal_contexts: frozenset[str] = frozenset()
    """Contexts of calls placed by the PBX's own phones."""
    inbound_contexts: frozenset[str] = frozenset()
    """Contexts of calls that arrive from a trunk."""
    trunks: frozenset[str] = frozenset()
    """Endpoint names of the PBX's trunks to its carriers: a call dialled to one leaves the PBX
    (``trunk-out`` in ``PJSIP/<number>@trunk-out`` or ``SIP/trunk-out/<number>``), a call whose
    channel comes from one arrived from outside (``PJSIP/trunk-be-00000003``)."""


def dial_target_endpoint(lastapp: str, lastdata: str) -> str | None:
    """The endpoint a ``Dial()`` went to: ``PJSIP/<number>@<endpoint>`` or ``<tech>/<endpoint>/<number>``."""
    if lastapp.strip().lower() != "dial":
        return None
    target = lastdata.replace("|", ",").split(",", 1)[0].split("&", 1)[0].strip()
    technology, slash, resource = target.partition("/")
    if not slash or not technology:
        return None
    if "@" in resource:
        return resource.rsplit("@", 1)[1] or None
    endpoint, slash, _number = resource.partition("/")
    return endpoint if slash and endpoint else None


def channel_endpoint(channel: str) -> str | None:
    """The endpoint of a channel name (``PJSIP/trunk-be-00000003`` is endpoint ``trunk-be``)."""
    _technology, slash, name = channel.strip().partition("/")
    if not slash or not name:
        return None
    endpoint, dash, _sequence = name.rpartition("-")
    return endpoint if dash and endpoint else name


def dialplan_direction(
    dialplan: Dialplan, context: str, channel: str, lastapp: str, lastdata: str
) -> DialplanDirection | None:
    """The direction the dialplan gives the call, or None when it does not tell.

    A call from a trunk, or run in an inbound context, is inbound (a forward of it to another
    trunk stays the inbound call it was); a call dialled to a trunk is outbound; ``internal``
    means placed by a phone of the PBX (an internal context) to no trunk: the decoder alone knows
    whether its destination is an extension (internal) or a number dialled out (outbound).
    """
    from_trunk = channel_endpoint(channel) in dialplan.trunks
    if from_trunk or context.strip() in dialplan.inbound_contexts:
        return "inbound"
    if dial_target_endpoint(lastapp, lastdata) in dialplan.trunks:
        return "outbound"
    if context.strip() in dialplan.internal_contexts:
        return "internal"
    return None
