"""The operator console: cameras, incidents and acknowledgements in a browser, and a JSON API.

A stage like the others: it reads the topics and the Redis state through the contracts in
spillwatch/ (events, redis_keys, acks, archive, snapshots) and imports no other stage. See
docs/console.md.
"""
