-- current_fields: one row per field of each document's latest extraction.
-- "Latest" is the extraction with the newest created_at (ties broken by the higher id); a
-- reprocess with the same model version replaces that extraction and moves its created_at.
--   SELECT source_key, value_num FROM current_fields WHERE name = 'total' AND value_num > 100;
-- Written as a NOT EXISTS over newer extractions, not DISTINCT ON, so a filter on the fields
-- (name, value_num) is applied first through fields' indexes.
-- v2 (migration 0002) appends raw_value, the text as printed on the page: `value` is written in
-- the style the model learned from its labels (upper case for SROIE, "22 MAR 18") while
-- raw_value keeps "22 Mar 18". fields.raw_value is NULL when the two are the same; the view
-- fills that in, so raw_value is never NULL here. It is the last column, and the view is
-- replaced in place (CREATE OR REPLACE), so queries by position and views built on this one
-- keep working.
CREATE OR REPLACE VIEW current_fields AS
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
    f.review_status,
    COALESCE(f.raw_value, f.value) AS raw_value
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
