-- current_fields: one row per field of each document's latest extraction.
-- "Latest" is the extraction with the newest created_at (ties broken by the higher id); a
-- reprocess with the same model version replaces that extraction and moves its created_at.
--   SELECT source_key, value_num FROM current_fields WHERE name = 'total' AND value_num > 100;
-- Written as a NOT EXISTS over newer extractions, not DISTINCT ON, so a filter on the fields
-- (name, value_num) is applied first through fields' indexes.
CREATE VIEW current_fields AS
SELECT
    d.id AS document_id,
    d.source_bucket,
    d.source_key,
    d.sha256,
    e.id AS extraction_id,
    mv.name AS model_version,
    e.created_at AS extracted_at,
    f.id AS field_id,
    f.name,
    f.value,
    f.value_num,
    f.value_date,
    f.currency,
    f.confidence,
    f.page,
    CASE
        WHEN f.box_x0 IS NULL THEN NULL
        ELSE ARRAY[f.box_x0, f.box_y0, f.box_x1, f.box_y1]
    END AS box,
    f.review_status
FROM fields AS f
JOIN extractions AS e ON e.id = f.extraction_id
JOIN documents AS d ON d.id = e.document_id
JOIN model_versions AS mv ON mv.id = e.model_version_id
WHERE NOT EXISTS (
    SELECT 1
    FROM extractions AS newer
    WHERE newer.document_id = e.document_id
      AND (newer.created_at, newer.id) > (e.created_at, e.id)
);
