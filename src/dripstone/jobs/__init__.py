"""Background jobs: the Huey queue, a database record per job id (`jid`), and recovery.

Huey carries work but never holds the only copy of it: each job's state lives in the
`jobs` table with a lease, and a periodic sweep re-queues jobs whose lease ran out.
"""
