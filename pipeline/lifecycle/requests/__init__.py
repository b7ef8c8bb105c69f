"""The paperwork of requests: messages, request ids, the register, receipts and the audit trail.

Requests, ledger entries and receipts carry a MAC (``signing``). The audit trail and the register
are sealed hash chains (``chain``); files that cannot be read as
records are skipped and reported (``skipped``).
"""
