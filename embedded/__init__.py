"""The embedded default: PostgreSQL, SeaweedFS and Prefect on this machine with zero set-up, as
`docflow up`, `down` and `status` start, stop and check them."""
