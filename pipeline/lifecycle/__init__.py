"""The GDPR lifecycle: erasure, subject export, retention and the audit log.

Everything here runs on one serial path (the owner of the erasure request
topic's single partition), so no two lifecycle operations touch the same files.
"""
