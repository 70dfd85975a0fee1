"""The database layer: the schema (`models`), sessions, migrations, and the query functions the
flows and the command line use, one module per concern: `documents`, `jobs` (and the claims
they hold on documents), `extractions`, `model_versions`, `labels`, `training_runs`, and
`reads` (the command line's reads over the views).

Nothing in the query modules commits: every function runs inside the caller's transaction, so a
caller can put several calls into one unit of work and a failure rolls all of them back. Use
`db.session.session_scope(...)` (commit on success, rollback on error) or `session.commit()`.
A claim, in particular, only takes effect for other workers once its transaction commits.

Order of the calls in one digitize run:
    job_id = jobs.open_job(...)
    registered = documents.register_documents(...)   # after discovery (skip known_objects first)
    jobs.mark_crashed_jobs(session, job_ids=jobs.abandoned_jobs(...))   # runs that were killed
    claimed = jobs.claim_documents(session, job_id, ...)
    extractions.store_extraction(...) | jobs.mark_document_failed(...) | jobs.release_claim(...)
                                                     # per document
    jobs.renew_claims(session, job_id, ttl)          # after each stored chunk: the run is alive
    jobs.close_job(session, job_id, "completed", ...)
"""
