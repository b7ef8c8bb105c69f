"""The paperwork of requests: messages, request ids, the register, receipts and the audit trail."""
