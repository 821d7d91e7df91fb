-- Least-privilege ClickHouse users for driftline on a ClickHouse server.
--
-- Run once as an administrator, with the passwords replaced, e.g.
--   clickhouse-client --user admin --password ... --multiquery < scripts/clickhouse-grants.sql
-- then give driftline the worker user:
--   DRIFTLINE_CLICKHOUSE_USER=driftline_worker DRIFTLINE_CLICKHOUSE_PASSWORD=...
-- and Grafana's ClickHouse datasource the read-only user (CLICKHOUSE_USER=driftline_grafana).
--
-- The worker user can read and write the driftline database and nothing else: no other
-- database, no table function that reaches outside (file, url, s3, remote, mysql,
-- postgresql, hdfs, executable, ...: those need the FILE, URL, S3, REMOTE, MYSQL,
-- POSTGRES, HDFS and SOURCES grants, which it does not get), no user management. The
-- query page and `driftline db query` add their own sandbox on top (readonly = 1, bounds,
-- the driftline database only); this is the server's own second wall.
-- The database name is `driftline`; change it everywhere below if DRIFTLINE_CLICKHOUSE_DATABASE differs.

CREATE DATABASE IF NOT EXISTS driftline;

CREATE SETTINGS PROFILE IF NOT EXISTS driftline_worker_profile SETTINGS
    max_memory_usage = 8000000000,
    max_execution_time = 600,
    max_partitions_per_insert_block = 0;

CREATE USER IF NOT EXISTS driftline_worker
    IDENTIFIED WITH sha256_password BY 'change-me-worker'
    SETTINGS PROFILE 'driftline_worker_profile';

REVOKE ALL ON *.* FROM driftline_worker;
-- migrations create and swap tables (EXCHANGE TABLES), readers use FINAL and OPTIMIZE
GRANT SELECT, INSERT, ALTER, CREATE TABLE, DROP TABLE, TRUNCATE, OPTIMIZE, SHOW TABLES, SHOW COLUMNS
    ON driftline.* TO driftline_worker;
GRANT CREATE DATABASE ON driftline.* TO driftline_worker;

-- Grafana (and any person) reads, within bounds that a query cannot lift.
CREATE SETTINGS PROFILE IF NOT EXISTS driftline_reader_profile SETTINGS
    readonly = 2 CONST,  -- no writes; settings may change, except those marked CONST
    max_execution_time = 30 CONST,
    max_result_rows = 1000000 CONST,
    max_result_bytes = 134217728 CONST,
    max_memory_usage = 1073741824 CONST;

CREATE USER IF NOT EXISTS driftline_grafana
    IDENTIFIED WITH sha256_password BY 'change-me-grafana'
    SETTINGS PROFILE 'driftline_reader_profile';

REVOKE ALL ON *.* FROM driftline_grafana;
GRANT SELECT, SHOW TABLES, SHOW COLUMNS ON driftline.* TO driftline_grafana;
