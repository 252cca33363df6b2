-- 0007: a placeholder on the clients branch (another branch brings the
-- real 0007); the lead deletes this file at merge.
SELECT 1;
