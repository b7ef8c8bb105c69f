"""Keys: the versioned keyring, the keyring file the workers follow, keyed pseudonyms and MACs.

``keyring`` (keys, their ids and the rules a secret must pass), ``fingerprint`` (what binds a key
id to its secret in stored data), ``keyring_file`` (loading and following the keyring file),
``pseudonym`` (HMAC pseudonyms of parties, per domain and tenant), ``macs`` (MACs of JSON
documents under keys derived from the keyring, one domain per purpose).
"""
