-- document_text: one row per page of every document, with the page's OCR text.
-- `text` is the page's words in reading order, one line of text per line of the page, and
-- `heading_text` the lines printed large (titles, names); both NULL for a page stored before
-- migration 0004 until its document is processed again. page_index counts from 0.
-- `search_vector` is the indexed tsvector of both (headings weigh 'A', the page 'D'), in the
-- 'simple' configuration, so the index serves a search through this view:
--   SELECT source_key, page_index, ts_headline('simple', text, q) FROM document_text,
--          websearch_to_tsquery('simple', 'grand total') AS q WHERE search_vector @@ q;
CREATE VIEW document_text AS
SELECT
    d.id AS document_id,
    d.source_bucket,
    d.source_key,
    p.page_index,
    p.text,
    p.heading_text,
    p.search_vector
FROM pages AS p
JOIN documents AS d ON d.id = p.document_id;
