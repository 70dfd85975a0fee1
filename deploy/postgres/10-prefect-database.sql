-- Runs once, when the postgres container initialises an empty data volume: the Prefect server
-- keeps its state in a database of its own, and its migrations need pg_trgm.
CREATE DATABASE prefect;
\connect prefect
CREATE EXTENSION IF NOT EXISTS pg_trgm;
