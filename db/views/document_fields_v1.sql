-- document_fields: one row per document, with the fields of its latest extraction as one JSONB
-- object {name: raw value}. Documents not extracted yet are listed too (status says why), with
-- NULL model_version and extracted_at and an empty object.
-- When a name occurs more than once in an extraction, the value with the highest confidence is
-- kept (jsonb keeps the last of duplicate keys; the aggregate orders by confidence ascending).
--   SELECT source_key, fields->>'invoice_number' FROM document_fields WHERE status = 'extracted';
CREATE VIEW document_fields AS
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
            SELECT jsonb_object_agg(f.name, f.value ORDER BY f.confidence ASC NULLS FIRST, f.id)
            FROM fields AS f
            WHERE f.extraction_id = e.id
        ) AS fields
    FROM extractions AS e
    JOIN model_versions AS mv ON mv.id = e.model_version_id
    WHERE e.document_id = d.id
    ORDER BY e.created_at DESC, e.id DESC
    LIMIT 1
) AS latest ON true;
