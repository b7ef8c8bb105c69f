"""The GDPR lifecycle: erasure, access export, restriction, objection, rectification, retention, the register.

Everything here runs on one serial path (the owner of the lifecycle topics'
single partitions), so no two lifecycle operations touch the same files.
"""
