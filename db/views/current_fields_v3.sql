-- current_fields v3 (migration 0006): a reviewer's decision is what people read. When a field
-- of the document has been reviewed (the latest decision other than "skip" for that document
-- and field name, whichever model version's extraction it was made on), `value`, value_num,
-- value_date, page and box are the reviewer's: the value as accepted or corrected, NULL when
-- the reviewer said the field is not on the document. review_status follows the decision.
-- Two columns are appended: `corrected` (true when the value shown is not the model's) and
-- `model_value` (what the model extracted). A correction therefore outlives a reprocess or a
-- new model version: it is the document's truth, not one extraction's.
--   SELECT source_key, value_num FROM current_fields WHERE name = 'total' AND value_num > 100;
-- Replaced in place (CREATE OR REPLACE): existing columns keep their names, types and order.
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
    CASE
        WHEN r.document_id IS NULL THEN f.value
        WHEN r.decision = 'absent' THEN NULL
        ELSE r.value
    END AS value,
    CASE WHEN r.document_id IS NULL THEN f.value_num ELSE r.value_num END AS value_num,
    CASE WHEN r.document_id IS NULL THEN f.value_date ELSE r.value_date END AS value_date,
    CASE WHEN r.decision = 'absent' THEN NULL ELSE f.currency END AS currency,
    f.confidence,
    CASE WHEN r.document_id IS NULL THEN f.page ELSE r.page END AS page,
    CASE
        WHEN r.document_id IS NOT NULL AND r.box_x0 IS NOT NULL
            THEN ARRAY[r.box_x0, r.box_y0, r.box_x1, r.box_y1]
        WHEN r.document_id IS NOT NULL AND r.value IS DISTINCT FROM f.value THEN NULL
        WHEN f.box_x0 IS NULL THEN NULL
        ELSE ARRAY[f.box_x0, f.box_y0, f.box_x1, f.box_y1]
    END AS box,
    CASE
        WHEN r.document_id IS NULL THEN f.review_status
        WHEN r.decision = 'absent' THEN 'rejected'::review_status
        WHEN r.value = f.value THEN 'accepted'::review_status
        ELSE 'corrected'::review_status
    END AS review_status,
    COALESCE(f.raw_value, f.value) AS raw_value,
    r.document_id IS NOT NULL AND r.value IS DISTINCT FROM f.value AS corrected,
    f.value AS model_value
FROM fields AS f
JOIN extractions AS e ON e.id = f.extraction_id
JOIN documents AS d ON d.id = e.document_id
JOIN model_versions AS mv ON mv.id = e.model_version_id
LEFT JOIN (
    SELECT DISTINCT ON (document_id, name)
        document_id, name, decision, value, value_num, value_date, page,
        box_x0, box_y0, box_x1, box_y1
    FROM review_decisions
    WHERE decision <> 'skip'
    ORDER BY document_id, name, decided_at DESC, id DESC
) AS r ON r.document_id = e.document_id AND r.name = f.name
WHERE NOT EXISTS (
    SELECT 1
    FROM extractions AS newer
    WHERE newer.document_id = e.document_id
      AND (newer.created_at, newer.id) > (e.created_at, e.id)
);
