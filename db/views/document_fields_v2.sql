-- document_fields v2 (migration 0006): a reviewed field shows the reviewer's value (JSON null
-- when the reviewer said it is not on the document), the same value current_fields shows.
CREATE OR REPLACE VIEW document_fields AS
SELECT
    d.id AS document_id,
    d.source_bucket,
    d.source_key,
    d.sha256,
    d.status,
    latest.model_version,
    latest.extracted_at,
    COALESCE(latest.fields, '{}'::jsonb) AS fields
FROM documents AS d
LEFT JOIN LATERAL (
    SELECT
        mv.name AS model_version,
        e.created_at AS extracted_at,
        (
            SELECT jsonb_object_agg(
                f.name,
                CASE
                    WHEN r.decision IS NULL THEN f.value
                    WHEN r.decision = 'absent' THEN NULL
                    ELSE r.value
                END
                ORDER BY f.confidence ASC NULLS FIRST, f.id
            )
            FROM fields AS f
            LEFT JOIN LATERAL (
                SELECT rd.decision, rd.value
                FROM review_decisions AS rd
                WHERE rd.document_id = d.id AND rd.name = f.name AND rd.decision <> 'skip'
                ORDER BY rd.decided_at DESC, rd.id DESC
                LIMIT 1
            ) AS r ON true
            WHERE f.extraction_id = e.id
        ) AS fields
    FROM extractions AS e
    JOIN model_versions AS mv ON mv.id = e.model_version_id
    WHERE e.document_id = d.id
    ORDER BY e.created_at DESC, e.id DESC
    LIMIT 1
) AS latest ON true;
