-- 0008: a placeholder on the clients branch (another branch brings the
-- real 0008); the lead deletes this file at merge.
SELECT 1;
