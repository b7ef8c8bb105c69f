"""The GDPR lifecycle: erasure, access export, restriction, objection, rectification, retention, the register.

Three rooms, importing downward only: ``requests`` (the paperwork: messages, request ids, the
register, receipts, the audit trail); the root's foundations (``ledger``: the subject ledger every
worker follows; ``rows``: removing or redacting a subject's rows in a table; ``subject``: whom a
request names); ``operations`` (what is done to the store: finding, rewriting, quarantine, export,
rectification, retention, re-apply); and the processors at the root (``erasure``, ``rights``, and
``desk``: the paperwork both share, register, receipts, audit and failed requests).

Everything here runs on one serial path (the owner of the lifecycle topics' single partitions),
so no two lifecycle operations touch the same files.
"""
